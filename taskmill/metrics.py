"""Prometheus metrics, in its text format, from the same figures as the dashboard.

A project adds the view to its URLs::

    path("metrics/taskmill", taskmill.metrics.view)

and may set TASKMILL_METRICS_TOKEN, which a scraper then sends as ``Authorization: Bearer
<token>``. No process of taskmill lives long enough to hold a counter (workers come and go,
several per machine), so what is exported are gauges over the last complete minute, read
from the per-minute rollups, and the state of queues, workers and schedules now.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import overview
from .conf import setting
from .limits.rates import parse_rate
from .limits.report import queue_reports
from .models.stats import BUCKET_BOUNDS_MS, DURATION_COLUMNS, LATENCY_COLUMNS, RunStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def view(request: HttpRequest) -> HttpResponse:
    token = setting("TASKMILL_METRICS_TOKEN")
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), str(token).encode()):
            return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    database = request.GET.get("db") or "default"
    return HttpResponse("".join(render(database)), content_type=CONTENT_TYPE)


def render(database: str = "default") -> Iterable[str]:
    yield from _queues(database)
    yield from _workers(database)
    yield from _last_minute(database)


def _queues(database: str) -> Iterable[str]:
    queues = overview.queue_overview(database)
    yield "# HELP taskmill_queue_runs Active runs per queue and state (held: by a limit).\n"
    yield "# TYPE taskmill_queue_runs gauge\n"
    for queue in queues:
        for state in ("ready", "scheduled", "waiting", "running", "held"):
            yield _line("taskmill_queue_runs", getattr(queue, state), queue=queue.name, state=state)
    yield "# HELP taskmill_queue_oldest_ready_seconds Age of the oldest run ready now.\n"
    yield "# TYPE taskmill_queue_oldest_ready_seconds gauge\n"
    for queue in queues:
        yield _line(
            "taskmill_queue_oldest_ready_seconds", queue.oldest_ready_age or 0, queue=queue.name
        )
    yield "# HELP taskmill_queue_paused 1 if the queue is paused.\n"
    yield "# TYPE taskmill_queue_paused gauge\n"
    for queue in queues:
        yield _line("taskmill_queue_paused", int(queue.paused), queue=queue.name)
    yield from _queue_limits(database, queues)


def _queue_limits(database: str, queues: list[overview.QueueOverview]) -> Iterable[str]:
    """The limited queues' limits and what they use: the slots (RUNNING runs) of a
    concurrency limit, the starts in the window of a rate limit."""
    reports = [report for report in queue_reports(database, queues).values() if report.limited]
    concurrent = [report for report in reports if report.concurrency_limit is not None]
    rated = [report for report in reports if report.rate_limit is not None]
    for name, text, rows, value in (
        ("taskmill_queue_concurrency_limit", "Runs of the queue that may run at once.",
         concurrent, lambda report: report.concurrency_limit),
        ("taskmill_queue_concurrency_in_use", "Its slots in use (running runs).",
         concurrent, lambda report: report.in_use),
        ("taskmill_queue_rate_limit_starts", "Starts the queue's rate allows per window.",
         rated, lambda report: parse_rate(report.rate_limit).count),
        ("taskmill_queue_rate_limit_window_seconds", "The rate's window.",
         rated, lambda report: parse_rate(report.rate_limit).seconds),
        ("taskmill_queue_rate_starts_in_window", "Starts the rate counts now.",
         rated, lambda report: report.started_in_window or 0),
        ("taskmill_queue_at_limit", "1 while claims pass the queue over for want of a slot.",
         reports, lambda report: int(report.at_limit)),
    ):  # fmt: skip
        yield f"# HELP {name} {text}\n# TYPE {name} gauge\n"
        for report in rows:
            yield _line(name, value(report), queue=report.name)


def _workers(database: str) -> Iterable[str]:
    alive = [worker for worker in overview.worker_overview(database) if worker.alive]
    late = overview.late_schedules(database)
    orphaned = overview.orphaned_runs(database, limit=1000)
    for name, value, text in (
        ("taskmill_workers_alive", len(alive), "Workers whose heartbeat is within the lease."),
        ("taskmill_worker_slots", sum(w.concurrency for w in alive), "Their concurrency."),
        ("taskmill_worker_busy", sum(w.running for w in alive), "Runs they hold now."),
        ("taskmill_schedules_late", len(late), "Enabled schedules past their fire time."),
        ("taskmill_runs_orphaned", len(orphaned), "Running runs whose lease ran out."),
    ):
        yield f"# HELP {name} {text}\n# TYPE {name} gauge\n"
        yield _line(name, value)


def _last_minute(database: str) -> Iterable[str]:
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    rows = list(RunStats.objects.using(database).filter(minute=minute))
    yield "# HELP taskmill_attempts_last_minute Attempts that ended in the last complete minute.\n"
    yield "# TYPE taskmill_attempts_last_minute gauge\n"
    for row in rows:
        labels = {"queue": row.queue_name, "task": row.task_path, "status": row.status}
        yield _line("taskmill_attempts_last_minute", row.count, **labels)
    for metric, columns, text in (
        ("taskmill_attempt_duration_last_minute_seconds", DURATION_COLUMNS, "How long they ran."),
        ("taskmill_attempt_latency_last_minute_seconds", LATENCY_COLUMNS, "Ready to started."),
    ):
        yield f"# HELP {metric} {text}\n# TYPE {metric} histogram\n"
        for row in rows:
            labels = {"queue": row.queue_name, "task": row.task_path, "status": row.status}
            seen = 0
            for bound, column in zip(BUCKET_BOUNDS_MS, columns, strict=True):
                seen += getattr(row, column)
                le = "+Inf" if bound == float("inf") else f"{bound / 1000:g}"
                yield _line(f"{metric}_bucket", seen, **labels, le=le)
            total = row.duration_sum if columns is DURATION_COLUMNS else row.latency_sum
            yield _line(f"{metric}_sum", total, **labels)
            yield _line(f"{metric}_count", row.count, **labels)


def _line(name: str, value: float, **labels: str) -> str:
    if not labels:
        return f"{name} {value:g}\n"
    text = ",".join(f'{key}="{_escaped(str(label))}"' for key, label in labels.items())
    return f"{name}{{{text}}} {value:g}\n"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
