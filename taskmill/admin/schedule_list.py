"""The schedules list's cells, made to fit a laptop as the runs list's are (run_list.py):
ten columns of one-line values needed 1,700 pixels where some 630 are left beside the
admin's navigation and filters. A name, a task path or a "when" now wraps; a time may take
two lines; and what belongs together shares a cell: under "when" the time zone (unless the
words already say it) and "declared in code" (then the code alone changes it: not under the
name, which is the row's link), since when under a paused or done state, and the next and
last fire times with the counts of fires made and skipped, in labelled lines as the runs
list's times.

Functions rather than ScheduleAdmin methods for the reason run_list.py gives:
``task_path`` is a model field, and its cell keeps that name (field-task_path)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Schedule
from ..schedule_text import describe
from . import display
from .run_list import task_cell


@admin.display(description="task", ordering="task_path")
def task_path(schedule: Schedule) -> SafeString:
    return task_cell(schedule.task_path)


@admin.display(description="when")
def when(schedule: Schedule) -> SafeString:
    """In words; below them its time zone unless the words say it, and "declared in code"
    for a schedule whose when only the code changes."""
    said = describe(
        schedule.kind,
        cron=schedule.cron,
        interval=schedule.interval,
        run_at=schedule.run_at,
        zone=schedule.timezone,
    )
    zone = (
        ""
        if schedule.timezone in said
        else format_html(
            '<span class="tm-sub field-timezone">{}</span>', display.breakable(schedule.timezone)
        )
    )
    in_code = (
        format_html('<span class="tm-sub field-code_owned">{}</span>', "declared in code")
        if schedule.code_owned
        else ""
    )
    return format_html("{}{}{}", said, zone, in_code)


@admin.display(description="state")
def state_badge(schedule: Schedule) -> SafeString:
    state = schedule.state
    since = {
        Schedule.State.DONE: schedule.last_fire_at,
        Schedule.State.PAUSED: schedule.paused_at,
    }.get(state)
    badge = format_html('<span class="tm-badge tm-state-{}">{}</span>', state, state)
    if since is None:
        return badge
    return format_html('{}<span class="tm-sub">since {}</span>', badge, display.short_moment(since))


@admin.display(description="fires", ordering="next_fire_at")
def fires(schedule: Schedule) -> SafeString:
    """Its next and last fire times, and how many fires it made and skipped (for its
    max_instances): labelled lines, the date only where it changes from the line above."""
    last_below = schedule.next_fire_at
    return format_html(
        '<dl class="tm-times"><dt>next</dt><dd class="field-next_fire">{}</dd>'
        '<dt>last</dt><dd class="field-last_fire">{}</dd>'
        '<dt>fired</dt><dd><span class="field-fire_count">{}</span>, skipped '
        '<span class="field-skip_count">{}</span></dd></dl>',
        display.short_moment(schedule.next_fire_at),
        display.short_moment(schedule.last_fire_at, below=last_below),
        schedule.fire_count,
        schedule.skip_count,
    )
