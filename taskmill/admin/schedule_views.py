"""What a schedule's admin page adds to its fields: its next fire times in its own time zone,
its recent runs, and "run now", which enqueues a run (never runs it inside the request)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from ..backend import DatabaseBackend
from ..models import Run, Schedule
from ..schedule_rules import task_for
from ..scheduler.firing import call_kwargs

UPCOMING = 5


def next_fire_times(schedule: Schedule, count: int = UPCOMING) -> list[datetime]:
    """The schedule's next ``count`` fire times from its stored next one, in its own time
    zone; fewer when it ends (end_at, max_fires) or fires once."""
    moment = schedule.next_fire_at
    if moment is None or not schedule.enabled:
        return []
    left = None if schedule.max_fires is None else schedule.max_fires - schedule.fire_count
    zone = ZoneInfo(schedule.timezone or "UTC")
    times: list[datetime] = []
    if schedule.is_creation_fire():
        # The fire of run_on_creation, then the times the trigger gives after the creation.
        times.append(moment.astimezone(zone))
        moment = schedule.compute_next_fire(moment)
        if moment is not None and moment <= times[0]:
            moment = None  # a once-schedule whose time had passed: that fire stood for it
    trigger = schedule.trigger(anchor=schedule.start_at or moment)
    while moment is not None and len(times) < count and (left is None or len(times) < left):
        if schedule.end_at and moment > schedule.end_at:
            break
        times.append(moment.astimezone(zone))
        if schedule.kind == Schedule.Kind.ONCE:
            break
        moment = trigger.after(moment)
    return times


def recent_runs(schedule: Schedule, count: int = 10) -> list[Run]:
    return list(Run.objects.filter(schedule=schedule).order_by("-id")[:count])


def run_now(schedule: Schedule, database: str = "default") -> Run:
    """Enqueue one run of the schedule's task now, with its arguments, outside its fire
    times: it is linked to the schedule but is not a fire (no fire time, no count)."""
    task = task_for(schedule)
    now = timezone.now()
    backend = task.get_backend()
    kwargs = call_kwargs(schedule, now)
    if not isinstance(backend, DatabaseBackend):
        result = task.enqueue(*schedule.args, **kwargs)
        return Run.objects.using(database).get(pk=int(result.id))
    run = backend.new_run(task, schedule.args, kwargs, now=now, schedule_id=schedule.pk)
    with transaction.atomic(using=backend.database):
        backend.save_runs(task, [run])
    return Run.objects.using(backend.database).get(pk=run.pk)
