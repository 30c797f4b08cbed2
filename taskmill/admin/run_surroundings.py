"""What a run's page shows of what surrounds it: the workers and errors of its attempts,
the schedule and batch it came from, the runs it depends on and that depend on it, its
callbacks' runs, and the mark of a task no worker knows (RunAdmin's read-only fields)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ..models import Run, RunDependency
from ..registry import resolve_or_none
from . import display

UNKNOWN_BADGE = format_html(
    '<span class="tm-badge tm-unknown-task" title="{}">unknown task</span>',
    "No task is registered at this path, nor as an alias: no worker can run it.",
)


def run_links(runs: Any) -> str:
    rows = [
        (reverse("admin:taskmill_run_change", args=[run.pk]), run.pk, run.task_path, run.status)
        for run in runs
    ]
    if not rows:
        return "—"
    return format_html_join(", ", '<a href="{}">#{}</a> {} ({})', rows)


class RunSurroundings:
    """RunAdmin's displays of a run's surroundings (a mixin: they need no admin state)."""

    @admin.display(description="unknown task")
    def unknown_task(self, run: Run) -> str:
        return format_html(
            '{} <span class="tm-unknown-reason">No task is registered at this path, nor as an '
            "alias, in this code: a worker would fail the run without running anything. "
            "Declare the path among a task's aliases, or point the run at a task with the action "
            '"Point at another task…".</span>',
            UNKNOWN_BADGE,
        )

    @admin.display(description="errors, one per failed attempt")
    def errors_list(self, run: Run) -> str:
        return display.error_list(run.errors)

    @admin.display(description="workers, one per attempt")
    def workers(self, run: Run) -> str:
        return format_html_join(", ", "{}", ((worker,) for worker in run.worker_ids)) or "—"

    @admin.display(description="schedule")
    def schedule_link(self, run: Run) -> str:
        if run.schedule_id is None:
            return "—"
        url = reverse("admin:taskmill_schedule_change", args=[run.schedule_id])
        return format_html('<a href="{}">{}</a>', url, run.schedule)

    @admin.display(description="batch")
    def batch_link(self, run: Run) -> str:
        if run.batch_id is None:
            return "—"
        url = reverse("admin:taskmill_batch_change", args=[run.batch_id])
        return format_html('<a href="{}" class="tm-run-batch">{}</a>', url, run.batch)

    @admin.display(description="depends on")
    def depends_on(self, run: Run) -> str:
        links = RunDependency.objects.filter(run=run).select_related("depends_on")
        return run_links(link.depends_on for link in links)

    @admin.display(description="runs that depend on it")
    def dependents(self, run: Run) -> str:
        links = RunDependency.objects.filter(depends_on=run).select_related("run")[:100]
        return run_links(link.run for link in links)

    @admin.display(description="callbacks")
    def callbacks(self, run: Run) -> str:
        task = resolve_or_none(run.task_path)
        paths = [getattr(task, name, None) for name in ("on_success", "on_failure")]
        paths = [path for path in paths if path]
        if not paths:
            return "—"
        # A callback's only argument is this run's id; recent runs are enough to look in.
        enqueued = Run.objects.filter(
            task_path__in=paths, args=[str(run.pk)], id__gt=run.pk
        ).order_by("id")[:10]
        return run_links(enqueued) if enqueued else "none enqueued (yet)"
