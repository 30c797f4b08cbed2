"""Pausing and resuming a schedule: the operator's switch in an incident.

A pause is operator state, apart from the definition: the code sync (``sync-schedules``,
a scheduler's start), an admin form saving a row and an import never change it, so a
schedule declared in code can be paused too and stays paused through deploys.

A paused schedule does not fire. Its next fire time is left where it was, so on resume the
fires it missed meanwhile are treated like those missed in an outage, by its misfire
policy: ``skip`` drops them, ``run_once`` (the default) enqueues one run for all of them,
``catch_up`` one per missed time (bounded). A fire time still within its grace time is on
time and fires. Like the control API (``taskmill.control``), each function takes
``database`` and returns whether it changed anything.
"""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from .models import Schedule


def _lookup(schedule: Schedule | int | str) -> Q:
    if isinstance(schedule, Schedule):
        return Q(pk=schedule.pk)
    if isinstance(schedule, str):
        return Q(name=schedule)
    return Q(pk=int(schedule))


def _set_paused(schedule: Schedule | int | str, paused: bool, database: str) -> bool:
    at = timezone.now() if paused else None
    rows = Schedule.objects.using(database).filter(_lookup(schedule))
    # Conditional, so that two operators pausing at once change it once (and one paused_at).
    updated = rows.filter(paused=not paused).update(paused=paused, paused_at=at)
    if not updated and not rows.exists():
        raise Schedule.DoesNotExist(f"No schedule {schedule!r} in the database {database!r}.")
    if updated and isinstance(schedule, Schedule):
        schedule.paused, schedule.paused_at = paused, at
    return bool(updated)


def pause_schedule(schedule: Schedule | int | str, *, database: str = "default") -> bool:
    """Stop ``schedule`` (a Schedule, its id or its name) from firing until resumed; a fire
    already enqueued is not undone. False if it was paused already.

    Raises ``Schedule.DoesNotExist`` if there is no such schedule."""
    return _set_paused(schedule, True, database)


def resume_schedule(schedule: Schedule | int | str, *, database: str = "default") -> bool:
    """Let a paused ``schedule`` fire again, within a scheduler's ``--max-sleep``; what it
    missed while paused follows its misfire policy. False if it was not paused."""
    return _set_paused(schedule, False, database)
