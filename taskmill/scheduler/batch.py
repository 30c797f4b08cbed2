"""Firing many due schedules in a few statements: the tick's fast path.

Firing schedule by schedule costs four round trips each (savepoint, compare-and-set, insert,
release): a thousand schedules due in the same second took seconds. Here a batch of due
schedules is fired with one compare-and-set per group of schedules whose change is the same
(read ``next_fire_at``, new ``next_fire_at``, fires; schedules due together usually form
one group) and one multi-row insert of all their runs, inside one savepoint:

* each group's ``UPDATE ... WHERE id IN (...) AND next_fire_at = <read> AND NOT paused``
  must change every row it names; if one row did not match (another scheduler fired it, a
  pause committed since the read) the savepoint is rolled back and the batch is fired
  schedule by schedule (``firing.fire``), where the losers do nothing;
* a run whose (schedule, fire time) is already stored (a schedule rewound by hand) fails
  the multi-row insert: rolled back the same way, and the one-by-one path skips that time.

The exactly-once argument is therefore the one of ``firing``: a fire happens only in the
transaction whose compare-and-set moved ``next_fire_at`` past it, and the unique
(schedule, fire time) of runs is the backstop.

Only schedules whose runs go to taskmill's backend on this database, that have no
dependencies and no ``max_instances`` take this path; the others (rare) are fired one by one
as before. (A fire ahead of its time could not count the instances still running at it.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .. import wakeup
from ..backend import stores_runs_in
from ..compat import task_enqueued
from ..db import NewRun, get_engine
from ..models import RunStatus, Schedule
from ..results import result_of
from ..schedule_rules import task_for
from ..signalling import send
from . import misfires

logger = logging.getLogger("taskmill.scheduler")


@dataclass(slots=True)
class Prepared:
    """A due schedule ready to fire in a batch: its fires and the runs they enqueue."""

    schedule: Schedule
    plan: misfires.FirePlan
    task: Any
    runs: list[NewRun]

    def group_key(self) -> tuple[Any, ...]:
        plan = self.plan
        last = plan.fire_times[-1] if plan.fire_times else None
        return (self.schedule.next_fire_at, plan.next_fire_at, len(plan.fire_times), last)


class _Contended(Exception):
    """A compare-and-set changed fewer rows than it named: fire one by one instead."""


def prepare(
    schedule: Schedule, plan: misfires.FirePlan, now: datetime, database: str, tasks: dict
) -> Prepared | None:
    """The schedule with its runs built, or None if it must be fired one by one (a task
    that cannot be resolved, another backend, arguments that do not serialise, a
    ``max_instances`` to count at the fire...)."""
    if schedule.max_instances is not None:
        return None
    key = (schedule.task_path, schedule.queue_name, schedule.priority, schedule.backend)
    try:
        task = tasks.get(key)
        if task is None:
            task = tasks[key] = task_for(schedule)
        backend = task.get_backend()
        if not stores_runs_in(backend, database):
            return None
        from .firing import scheduled_runs

        runs = scheduled_runs(backend, task, schedule, plan.fire_times, now)
    except Exception:
        return None  # the one-by-one path reports it and retries later
    return Prepared(schedule, plan, task, runs)


def fire_prepared(batch: list[Prepared], now: datetime, database: str) -> int | None:
    """Fire ``batch`` in one savepoint; return the runs enqueued, or None if the batch has to
    be fired one by one (contended, or a fire time already stored). The caller then sends
    the ``task_enqueued`` signals (``announce``)."""
    groups: dict[tuple[Any, ...], list[Prepared]] = {}
    for item in batch:
        groups.setdefault(item.group_key(), []).append(item)
    runs = [run for item in batch for run in item.runs]
    try:
        with transaction.atomic(using=database):
            for (read, next_fire_at, fires, last_fire_at), members in groups.items():
                changes: dict[str, Any] = {"next_fire_at": next_fire_at, "blocked_until": None}
                if fires:
                    changes.update(
                        fire_count=F("fire_count") + fires,
                        last_fire_at=last_fire_at,
                        last_enqueued_at=now,
                        last_error="",
                    )
                ids = [item.schedule.pk for item in members]
                # paused=False: a pause committed since the read wins over the fire.
                cas = Schedule.objects.using(database).filter(
                    pk__in=ids, next_fire_at=read, paused=False
                )
                if cas.update(**changes) != len(ids):
                    raise _Contended
            if runs:
                insert(runs, now, database)
    except (_Contended, IntegrityError):
        return None
    return len(runs)


def insert(runs: list[NewRun], now: datetime, database: str) -> None:
    """One multi-row insert of runs of any tasks, waking the workers of their queues at
    commit (what ``DatabaseBackend.save_runs`` does for the runs of one task).

    ``now`` may be ahead of the wall clock (a fire written ahead, committed at ``now``):
    the runs available then are those whose workers the commit wakes."""
    visible_at = max(timezone.now(), now)
    queues = {
        run.queue_name
        for run in runs
        if run.available_at <= visible_at and run.status == RunStatus.READY
    }
    get_engine(database).insert_runs(runs, queues)
    for queue_name in queues:
        wakeup.wake_local_after_commit(database, queue_name)


def announce(batch: list[Prepared], database: str) -> None:
    """Send ``task_enqueued`` for each run, and say (at DEBUG) what fired once committed."""
    fired: list[tuple[str, datetime, str]] = []
    for item in batch:
        backend = item.task.get_backend()
        for run in item.runs:
            result = result_of(item.task, run)
            send(task_enqueued, type(backend), result)
            fired.append((item.schedule.name, run.scheduled_for, result.id))
    if fired and logger.isEnabledFor(logging.DEBUG):

        def say() -> None:
            for name, fire_time, run_id in fired:
                logger.debug(
                    "Schedule %r fired for %s: run %s", name, fire_time.isoformat(), run_id
                )

        # On commit: a fire whose transaction rolled back never happened.
        transaction.on_commit(say, using=database)


# -- ahead of the next fire time ---------------------------------------------------------------


def prepare_due(database: str, fire_at: datetime, limit: int, *, lock: bool) -> list[Prepared]:
    """Read and prepare the schedules due at ``fire_at`` (plans worked out as of ``fire_at``,
    runs built), up to ``limit``; ``lock``: ``FOR UPDATE SKIP LOCKED`` (in the caller's
    transaction), so that concurrent schedulers take different ones.

    Schedules with dependencies or ``max_instances`` are left to the regular tick, which
    checks them at the fire.
    """
    from . import dag
    from .firing import due_schedules, plan_fires

    query = due_schedules(database, fire_at)
    if lock:
        query = query.select_for_update(skip_locked=True)
    due = list(query[:limit])
    if not due:
        return []
    dependent = set(dag.dependencies_of([schedule.pk for schedule in due], database))
    tasks: dict[Any, Any] = {}
    prepared = []
    for schedule in due:
        if schedule.pk in dependent:
            continue
        try:
            plan = plan_fires(schedule, fire_at)
        except Exception:
            continue  # the regular tick meets it at its time, and says what is wrong
        item = prepare(schedule, plan, fire_at, database, tasks)
        if item is not None:
            prepared.append(item)
    return prepared


def restamp(batch: list[Prepared], now: datetime) -> None:
    """Give runs built ahead the time they are really enqueued at (``now``)."""
    for item in batch:
        for run in item.runs:
            if run.available_at == run.enqueued_at:
                run.available_at = now
            run.enqueued_at = now
