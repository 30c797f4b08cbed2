"""The runs list's cells, made to fit a laptop: at 1,280 pixels, with the admin's navigation
and the filters open, the list has some 600 pixels. Eleven columns of one-line values needed
twice that, and most of it went to headers wider than their values ("PRIORITY" over "0").
So what belongs together shares a cell, a main line with quiet lines under it: a running
run's progress and the attempts made under its status, the priority under its queue, and
the four times in one cell, each labelled.

These are functions, not RunAdmin methods, because a list's cell is classed by its name
(field-status, field-queue_name...) and a model field's name in ``list_display`` shows the
field's value, never a method's: a callable is how the cell keeps its field's name, that
tests and a project's own CSS select. The times keep theirs as classes of their values
(field-enqueued, field-started, field-finished, field-duration)."""

from __future__ import annotations

from datetime import datetime

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import Run, RunStatus
from ..unknown_tasks import is_known
from . import display
from . import metadata as run_metadata
from .run_surroundings import UNKNOWN_BADGE


def task_cell(task_path: str) -> SafeString:
    """A task's name, then its module smaller: a long path wraps at its dots and
    underscores instead of widening the column. The whole path is in its title."""
    module, _, name = task_path.rpartition(".")
    return format_html(
        '<span title="{}">{}</span>{}',
        task_path,
        display.breakable(name or module),
        format_html('<span class="tm-sub">{}</span>', display.breakable(module)) if name else "",
    )


@admin.display(description="task", ordering="task_path")
def task_name(run: Run) -> SafeString:
    if is_known(run.task_path):
        return task_cell(run.task_path)
    return format_html("{} {}", task_cell(run.task_path), UNKNOWN_BADGE)


@admin.display(description="status", ordering="status")
def status(run: Run) -> SafeString:
    """Its status; a running run's last progress report, small; the attempts it made."""
    progress = None
    if run.status == RunStatus.RUNNING and run_metadata.progress_of(run) is not None:
        progress = run_metadata.progress_bar(run, message=False, small=True)
    return format_html(
        '<span class="tm-status">{}</span>{}<span class="tm-sub field-attempt">{}</span>',
        run.get_status_display(),
        format_html('<span class="field-running_progress">{}</span>', progress) if progress else "",
        attempts(run.attempt),
    )


def attempts(count: int) -> str:
    """How many attempts a run made (started) so far: "0 attempts", "1 attempt"."""
    return f"{count} attempt{'s' * (count != 1)}"


@admin.display(description="queue", ordering="queue_name")
def queue_name(run: Run) -> SafeString:
    return format_html(
        '{}<span class="tm-sub field-priority">priority {}</span>',
        display.breakable(run.queue_name),
        run.priority,
    )


@admin.display(description="times", ordering="enqueued_at")
def times(run: Run) -> SafeString:
    """When it was enqueued, when its last attempt started, when it finished and in how
    long: a labelled line each, the date only where it changes from the line above."""
    lines: list[tuple[str, SafeString]] = []
    above: datetime | None = None
    for label, value in (
        ("enqueued", run.enqueued_at),
        ("started", run.last_attempted_at),
        ("finished", run.finished_at),
    ):
        if value is None:
            continue  # not yet: an empty line would only say "—"
        shown = format_html(
            '<span class="field-{}">{}</span>', label, display.short_moment(value, below=above)
        )
        if label == "finished" and run.last_attempted_at is not None:
            took = display.between(run.last_attempted_at, run.finished_at)
            shown = format_html(
                '{} <span class="tm-took">in <span class="field-duration">{}</span></span>',
                shown,
                took,
            )
        lines.append((label, shown))
        above = value
    return format_html(
        '<dl class="tm-times">{}</dl>',
        format_html_join("", "<dt>{}</dt><dd>{}</dd>", iter(lines)),
    )
