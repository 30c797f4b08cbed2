"""The dashboard: queues, charts of the last hour, day or week, batches, workers, and what
needs a look.

It is the changelist of a proxy model (``Dashboard``), so that it sits in the admin index
among taskmill's models and follows the permission to view runs. Every section is also a
fragment (``?fragment=queues``) that the page's small script re-fetches every few seconds
while the tab is visible. Nothing here counts or scans the runs table: counts come from
active runs through the claim indexes, each state up to a cap (``taskmill.overview``),
charts from the per-minute rollups (``taskmill.rollups``), batches' progress from their own
counters, runs of unknown tasks from the task index, up to a cap (``taskmill.unknown_tasks``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from .. import overview, registry
from ..models import Batch, Dashboard, RunStats
from ..rollups import WINDOWS, Point, Window, recent_names, series
from ..unknown_tasks import COUNT_CAP, unknown_tasks
from . import charts
from .batches import progress_bar, state_text, unsealed_for_long

FRAGMENTS = ("queues", "charts", "batches", "workers", "attention")
REFRESH_SECONDS = 5
# The batches section: the newest open batches, and those finished in the last minutes.
BATCHES_SHOWN = 8
FINISHED_SHOWN = 4
BATCHES_FINISHED_SHOWN_FOR = timedelta(minutes=10)
LATE_GRACE_SECONDS = 60.0


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """Not a list of rows: the control room's front page."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("taskmill.view_run")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self):
        # The front page only. Django's per-object pages would show a run through this proxy
        # with every field, its arguments unmasked, to anyone who may view runs.
        view = self.admin_site.admin_view(self.changelist_view)
        info = self.opts.app_label, self.opts.model_name
        return [path("", view, name="{}_{}_changelist".format(*info))]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        database = request.GET.get("db") or "default"
        choice = _choices(request)
        fragment = request.GET.get("fragment")
        if fragment in FRAGMENTS:
            context = {"choice": choice, **SECTIONS[fragment](database, choice)}
            return TemplateResponse(request, f"taskmill/admin/dashboard/{fragment}.html", context)
        context = {
            **self.admin_site.each_context(request),
            "title": "taskmill dashboard",
            "opts": self.model._meta,
            "choice": choice,
            "windows": WINDOWS.values(),
            "tasks_known": _known_tasks(),
            "refresh_seconds": REFRESH_SECONDS,
            "fragments": FRAGMENTS,
        }
        for section in FRAGMENTS:
            context.update(SECTIONS[section](database, choice))
        # The queues section lists every queue the filter offers (active ones and those of
        # the last day's rollups): asking the overview again would count active runs twice.
        context["queues_known"] = [row["name"] for row in context["queues"]]
        return TemplateResponse(request, "taskmill/admin/dashboard/page.html", context)


def _choices(request: HttpRequest) -> dict[str, Any]:
    window = WINDOWS.get(request.GET.get("window", ""), WINDOWS["hour"])
    return {
        "window": window,
        "queue": request.GET.get("queue") or "",
        "task": request.GET.get("task") or "",
        "query": request.GET.urlencode(),
    }


def _known_tasks() -> list[str]:
    registry.autodiscover()  # this process may not have imported the project's tasks yet
    return sorted(registry.registered_tasks())


def queues_section(database: str, choice: dict[str, Any]) -> dict[str, Any]:
    """Queues with work now, and those that had some in the last day (idle ones included:
    an empty queue is news too), with how many attempts ended in each in the last hour."""
    queues = overview.queue_overview(database)
    ended = recent_queue_activity(database)
    shown = {queue.name for queue in queues}
    queues += [idle_queue(name) for name in sorted(set(ended) - shown)]
    rows = [
        {
            **asdict(queue),
            "shown": {state: queue.shown(state) for state in overview.STATES},
            "ended_last_hour": ended.get(queue.name, 0),
        }
        for queue in queues
    ]
    capped = queues[0].capped if queues else ()
    return {
        "queues": sorted(rows, key=lambda row: row["name"]),
        "queues_capped": ", ".join(capped),
        "count_cap": f"{overview.count_cap():,}",
    }


def recent_queue_activity(database: str) -> dict[str, int]:
    """Attempts ended per queue in the last hour; queues active in the last day with 0."""
    now = timezone.now()
    last_hour = (
        RunStats.objects.using(database)
        .filter(minute__gte=now - timedelta(hours=1))
        .values("queue_name")
        .annotate(ended=Sum("count"))
        .order_by()
    )
    activity = dict.fromkeys(recent_names("queue_name", database=database), 0)
    activity.update((row["queue_name"], row["ended"] or 0) for row in last_hour)
    return activity


def idle_queue(name: str) -> overview.QueueOverview:
    return overview.QueueOverview(
        name=name, ready=0, scheduled=0, waiting=0, running=0, held=0, paused=False,
        paused_at=None, oldest_ready_age=None,
    )  # fmt: skip


def charts_section(database: str, choice: dict[str, Any]) -> dict[str, Any]:
    window: Window = choice["window"]
    points = series(window, database=database, queue=choice["queue"], task=choice["task"])
    totals = {key: sum(point.counts[key] for point in points) for key in points[0].counts}
    everything = sum(totals.values())
    overall = Point(points[0].start)  # one histogram for the whole window
    for point in points:
        overall.durations = [a + b for a, b in zip(overall.durations, point.durations, strict=True)]
        overall.latencies = [a + b for a, b in zip(overall.latencies, point.latencies, strict=True)]
    return {
        "totals": totals,
        "total": everything,
        "per_minute": everything / (window.span.total_seconds() / 60),
        "duration_p50": overall.duration_ms(0.5),
        "duration_p95": overall.duration_ms(0.95),
        "latency_p50": overall.latency_ms(0.5),
        "latency_p95": overall.latency_ms(0.95),
        "throughput_chart": charts.stacked_bars(points),
        "duration_chart": charts.percentile_lines(
            points, lambda point, q: point.duration_ms(q), "duration p50 and p95"
        ),
        "latency_chart": charts.percentile_lines(
            points, lambda point, q: point.latency_ms(q), "enqueue to start p50 and p95"
        ),
        "chart_series": charts.THROUGHPUT,
    }


def workers_section(database: str, choice: dict[str, Any]) -> dict[str, Any]:
    workers = overview.worker_overview(database)
    alive = [worker for worker in workers if worker.alive]
    return {
        "workers": workers,
        "workers_alive": len(alive),
        "slots": sum(worker.concurrency for worker in alive),
        "busy": sum(worker.running for worker in alive),
    }


def attention_section(database: str, choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "late_schedules": overview.late_schedules(database, grace=LATE_GRACE_SECONDS),
        "orphaned_runs": overview.orphaned_runs(database, limit=20),
        # Counted up to a cap through the task index (taskmill.unknown_tasks).
        "unknown_tasks": unknown_tasks(database),
        "unknown_cap": COUNT_CAP,
        "unsealed_batches": unsealed_for_long(database, most=20),
    }


def batches_section(database: str, choice: dict[str, Any]) -> dict[str, Any]:
    """The open batches, newest first, and those that finished in the last few minutes:
    each with its progress bar, read from the batch's own counters."""
    rows = Batch.objects.using(database)
    open_ = list(rows.filter(finished_at__isnull=True).order_by("-id")[:BATCHES_SHOWN])
    since = timezone.now() - BATCHES_FINISHED_SHOWN_FOR
    finished = list(rows.filter(finished_at__gte=since).order_by("-finished_at")[:FINISHED_SHOWN])
    return {
        "batches": [
            {
                "batch": batch,
                "bar": progress_bar(batch),
                "ended": f"{batch.total - batch.pending} of {batch.total}",
                "state": state_text(batch),
            }
            for batch in open_ + finished
        ],
        "batches_open": rows.filter(finished_at__isnull=True).count() if open_ else 0,
    }


SECTIONS = {
    "queues": queues_section,
    "charts": charts_section,
    "batches": batches_section,
    "workers": workers_section,
    "attention": attention_section,
}
