"""The fire transaction: how a due schedule becomes enqueued runs exactly once.

One tick is one transaction over a batch of due schedules (``next_fire_at <= now``, read
through its index, nothing else). Where the database has ``SKIP LOCKED`` the batch is
selected ``FOR UPDATE SKIP LOCKED``, so concurrent schedulers take different schedules
instead of queueing behind each other. For each schedule, inside a savepoint:

1. compare-and-set: ``UPDATE ... SET next_fire_at = <next> WHERE id = ? AND next_fire_at =
   <value read>``; if no row changed, another scheduler fired it: do nothing;
2. insert its runs (on taskmill's backend, in this same transaction). The runs carry
   (schedule, scheduled_for), which is unique: even a schedule rewound by hand cannot
   enqueue a fire time twice while that run is stored.

Both commit together or not at all. The schedule's own ``next_fire_at`` decides what fires,
so pruning runs never lets a time fire again.

A paused schedule (``paused``, the operator's switch) is never due: its ``next_fire_at``
stays where it was, so once resumed the fires it missed are handled by its misfire policy
like those of an outage.

A schedule on another django.tasks backend is enqueued through that backend inside the same
transaction, after the compare-and-set won. A backend that stores its tasks in the same
database (django-tasks-db, say) thus gets exactly-once too; one that stores them elsewhere
gets at-least-once: if the process dies after that backend accepted the task and before
this transaction commits, the schedule is still due and another scheduler enqueues the
same fire time again. Enqueueing after the commit would turn that into at-most-once (a
lost fire); a duplicate is the lesser evil, and the window is one commit long.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..backend import DatabaseBackend
from ..db import get_engine
from ..models import Schedule
from ..schedule_rules import task_for
from . import batch, dag, misfires

logger = logging.getLogger("taskmill.scheduler")

BATCH_SIZE = 100
# How many schedules due at the next fire time the loop prepares ahead (scheduler.batch).
PREFETCH_LIMIT = 2000
# How long a due fire waits before its dependencies are checked again.
DEPENDENCY_RECHECK = timedelta(seconds=2)
# How long a schedule whose enqueue failed (task gone, backend down...) waits to retry.
ERROR_RETRY = timedelta(seconds=30)


@dataclass
class TickResult:
    schedules: int = 0  # due schedules this tick looked at
    runs: int = 0  # runs enqueued


def due_schedules(database: str, now: datetime) -> Any:
    return (
        Schedule.objects.using(database)
        .filter(enabled=True, paused=False, next_fire_at__lte=now)
        .filter(Q(blocked_until__isnull=True) | Q(blocked_until__lte=now))
        .order_by("next_fire_at")
    )


def tick(
    database: str = "default", now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> TickResult:
    """Fire up to ``batch_size`` due schedules, as of ``now`` (the wall clock by default)."""
    now = now or timezone.now()
    result = TickResult()
    with transaction.atomic(using=database):
        query = due_schedules(database, now)
        query = get_engine(database).lock_skipping_locked(query)
        due = list(query[:batch_size])
        if not due:
            return result
        result.schedules = len(due)
        dependencies = dag.dependencies_of([schedule.pk for schedule in due], database)
        # The common case, schedules without dependencies on taskmill's own backend, fires
        # in a few statements for the whole batch (taskmill.scheduler.batch); the rest, and
        # a batch that met a concurrent scheduler or a stored fire time, one by one.
        tasks: dict[Any, Any] = {}
        batched: list[batch.Prepared] = []
        one_by_one: list[tuple[Schedule, misfires.FirePlan | None]] = []
        for schedule in due:
            if dependencies.get(schedule.pk):
                one_by_one.append((schedule, None))
                continue
            plan = plan_fires(schedule, now)
            prepared = batch.prepare(schedule, plan, now, database, tasks)
            if prepared is None:
                one_by_one.append((schedule, plan))
            else:
                batched.append(prepared)
        if batched:
            fired = batch.fire_prepared(batched, now, database)
            if fired is None:
                one_by_one.extend((item.schedule, item.plan) for item in batched)
            else:
                batch.announce(batched, database)
                result.runs += fired
        for schedule, plan in one_by_one:
            result.runs += fire(
                schedule, now, dependencies.get(schedule.pk, []), database, plan=plan
            )
    return result


def next_due_at(database: str, now: datetime) -> datetime | None:
    """When the earliest schedule that is not due yet will be (for the loop's sleep)."""
    return (
        Schedule.objects.using(database)
        .filter(enabled=True, paused=False, next_fire_at__gt=now)
        .order_by("next_fire_at")
        .values_list("next_fire_at", flat=True)
        .first()
    )


def plan_fires(schedule: Schedule, now: datetime) -> misfires.FirePlan:
    """What the due ``schedule`` fires now (the misfire rules), saying what they dropped."""
    plan = misfires.plan(schedule, now)
    if plan.dropped:
        logger.warning(
            "Schedule %r: missed fires since %s dropped by policy %s (%d fire(s) now)",
            schedule.name,
            schedule.next_fire_at.isoformat(),
            schedule.misfire_policy,
            len(plan.fire_times),
        )
    return plan


def fire(
    schedule: Schedule,
    now: datetime,
    dependency_ids: list[int],
    database: str,
    plan: misfires.FirePlan | None = None,
) -> int:
    """Fire one due schedule; return how many runs it enqueued (0 if another scheduler won).

    ``plan``: its fires, if the caller already worked them out (``plan_fires``)."""
    read = schedule.next_fire_at
    plan = plan or plan_fires(schedule, now)
    # paused=False too: a pause committed since the read wins over the fire.
    cas = Schedule.objects.using(database).filter(pk=schedule.pk, next_fire_at=read, paused=False)
    if plan.fire_times and not dag.dependencies_met(
        schedule.last_enqueued_at, dependency_ids, database
    ):
        cas.update(blocked_until=now + DEPENDENCY_RECHECK)
        return 0
    changes: dict[str, Any] = {"next_fire_at": plan.next_fire_at, "blocked_until": None}
    if plan.fire_times:
        changes.update(
            fire_count=F("fire_count") + len(plan.fire_times),
            last_fire_at=plan.fire_times[-1],
            last_enqueued_at=now,
            last_error="",
        )
    # One savepoint holds the compare-and-set and the runs, so a failure rolls back both and
    # costs this schedule only, not the batch.
    try:
        try:
            with transaction.atomic(using=database):
                if not cas.update(**changes):
                    return 0  # another scheduler fired it first
                fired = enqueue(schedule, plan.fire_times, now, database)
                return _fired(schedule, fired, database)
        except IntegrityError:
            # A fire time already has its run (the schedule was rewound by hand).
            with transaction.atomic(using=database):
                if not cas.update(**changes):
                    return 0
                fired = enqueue(schedule, plan.fire_times, now, database, one_by_one=True)
                return _fired(schedule, fired, database)
    except DatabaseError:
        raise  # the whole tick rolls back; the loop reconnects and tries again
    except Exception as exc:
        logger.exception("Schedule %r could not be enqueued; retrying later", schedule.name)
        cas.update(blocked_until=now + ERROR_RETRY, last_error=f"{type(exc).__name__}: {exc}")
        return 0


def _fired(schedule: Schedule, fired: list[tuple[datetime, str]], database: str) -> int:
    """Say (at DEBUG: ``-v 2``) what fired, once it is committed; return how many runs."""
    if fired and logger.isEnabledFor(logging.DEBUG):
        name = schedule.name

        def say() -> None:
            for fire_time, run_id in fired:
                logger.debug(
                    "Schedule %r fired for %s: run %s", name, fire_time.isoformat(), run_id
                )

        # On commit: a fire whose transaction rolled back never happened.
        transaction.on_commit(say, using=database)
    return len(fired)


def call_kwargs(schedule: Schedule, fire_time: datetime) -> dict[str, Any]:
    kwargs = dict(schedule.kwargs)
    if schedule.fire_time_kwarg:
        kwargs[schedule.fire_time_kwarg] = fire_time.isoformat()  # JSON holds strings only
    return kwargs


def enqueue(
    schedule: Schedule,
    fire_times: Sequence[datetime],
    now: datetime,
    database: str,
    one_by_one: bool = False,
) -> list[tuple[datetime, str]]:
    """Enqueue the fire times (inside the caller's transaction); return those that went in,
    each with its run's (result's) id."""
    if not fire_times:
        return []
    task = task_for(schedule)
    backend = task.get_backend()
    if not (isinstance(backend, DatabaseBackend) and backend.database == database):
        return [
            (fire_time, task.enqueue(*schedule.args, **call_kwargs(schedule, fire_time)).id)
            for fire_time in fire_times
        ]
    runs = scheduled_runs(backend, task, schedule, fire_times, now)
    if not one_by_one:
        results = backend.save_runs(task, runs)
        return [(run.scheduled_for, result.id) for run, result in zip(runs, results, strict=True)]
    inserted: list[tuple[datetime, str]] = []
    for run in runs:
        try:
            with transaction.atomic(using=database):
                (result,) = backend.save_runs(task, [run])
            inserted.append((run.scheduled_for, result.id))
        except IntegrityError:
            logger.warning(
                "Schedule %r already fired %s; not enqueued again",
                schedule.name,
                run.scheduled_for.isoformat(),
            )
    return inserted


def scheduled_runs(
    backend: DatabaseBackend, task: Any, schedule: Schedule, fire_times: Any, now: datetime
) -> list[Any]:
    """The runs of a schedule's fires, built for the backend's insert (one per fire time)."""
    return [
        backend.new_run(
            task,
            schedule.args,
            call_kwargs(schedule, fire_time),
            now=now,
            schedule_id=schedule.pk,
            scheduled_for=fire_time,
        )
        for fire_time in fire_times
    ]
