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

A fire time can also be *skipped*: consumed (the schedule moves past it) without a run,
because ``max_instances`` runs of the schedule are still pending or running
(``scheduler.instances``), or because the task is unique and a pending or running run holds
the key. A skip is logged (INFO, one line per fire time, once committed) and counted in
``skip_count``; only the fire times that enqueued a run count in ``fire_count`` and towards
``max_fires``.

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

from ..backend import DatabaseBackend, stores_runs_in
from ..db import get_engine
from ..models import Run, Schedule
from ..schedule_rules import task_for
from . import batch, dag, instances, misfires

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
    # One savepoint holds the compare-and-set and the runs, so a failure rolls back both and
    # costs this schedule only, not the batch.
    try:
        # After the row was read: a fire by another scheduler since fails the compare-and-set.
        admitted = instances.admit(schedule, plan.fire_times, database)
        skipped = [(moment, _over_limit(admitted.limit)) for moment in admitted.skipped]
        try:
            with transaction.atomic(using=database):
                changes = fire_changes(schedule, plan, admitted.fire_times, len(skipped), now)
                if not cas.update(**changes):
                    return 0  # another scheduler fired it first
                fired = enqueue(schedule, admitted.fire_times, now, database)
                return _report(schedule, fired, skipped, database)
        except IntegrityError:
            # A fire time already has its run (the schedule was rewound by hand), or a run of
            # a unique task holds the key: run by run, then count what went in.
            with transaction.atomic(using=database):
                if not cas.update(next_fire_at=plan.next_fire_at, blocked_until=None):
                    return 0
                fired, held = enqueue_each(schedule, admitted.fire_times, now, database)
                skipped += [(moment, HELD_KEY) for moment in held]
                fired_times = [moment for moment, _run_id in fired]
                changes = fire_changes(schedule, plan, fired_times, len(skipped), now)
                Schedule.objects.using(database).filter(pk=schedule.pk).update(**changes)
                return _report(schedule, fired, skipped, database)
    except DatabaseError:
        raise  # the whole tick rolls back; the loop reconnects and tries again
    except Exception as exc:
        logger.exception("Schedule %r could not be enqueued; retrying later", schedule.name)
        cas.update(blocked_until=now + ERROR_RETRY, last_error=f"{type(exc).__name__}: {exc}")
        return 0


HELD_KEY = "a pending or running run of its task holds the same unique key"


def _over_limit(limit: int | None) -> str:
    return f"{limit} of its runs still pending or running (max_instances={limit})"


def fire_changes(
    schedule: Schedule,
    plan: misfires.FirePlan,
    fired: Sequence[datetime],
    skipped: int,
    now: datetime,
) -> dict[str, Any]:
    """The schedule's new state once ``fired`` of the plan's times enqueued a run and
    ``skipped`` enqueued nothing: only the first are fires."""
    changes: dict[str, Any] = {
        "next_fire_at": plan.next_after(schedule, len(fired)),
        "blocked_until": None,
    }
    if plan.fire_times:
        changes["last_error"] = ""
    if fired:
        changes.update(
            fire_count=F("fire_count") + len(fired), last_fire_at=fired[-1], last_enqueued_at=now
        )
    if skipped:
        changes["skip_count"] = F("skip_count") + skipped
    return changes


def _report(
    schedule: Schedule,
    fired: list[tuple[datetime, str]],
    skipped: list[tuple[datetime, str]],
    database: str,
) -> int:
    """Say what was skipped and why (INFO, one line per fire time) and what fired (DEBUG:
    ``-v 2``), once committed; return how many runs."""
    debug = bool(fired) and logger.isEnabledFor(logging.DEBUG)
    if skipped or debug:
        name = schedule.name

        def say() -> None:
            for fire_time, why in skipped:
                logger.info(
                    "Schedule %r skipped its fire at %s: %s", name, fire_time.isoformat(), why
                )
            if debug:
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
    schedule: Schedule, fire_times: Sequence[datetime], now: datetime, database: str
) -> list[tuple[datetime, str]]:
    """Enqueue the fire times (inside the caller's transaction); return each with its run's
    (result's) id. A fire time already stored or a unique key held fails the whole insert."""
    if not fire_times:
        return []
    task = task_for(schedule)
    backend = task.get_backend()
    if not stores_runs_in(backend, database):
        return [
            (fire_time, task.enqueue(*schedule.args, **call_kwargs(schedule, fire_time)).id)
            for fire_time in fire_times
        ]
    runs = scheduled_runs(backend, task, schedule, fire_times, now)
    results = backend.save_runs(task, runs)
    return [(run.scheduled_for, result.id) for run, result in zip(runs, results, strict=True)]


def enqueue_each(
    schedule: Schedule, fire_times: Sequence[datetime], now: datetime, database: str
) -> tuple[list[tuple[datetime, str]], list[datetime]]:
    """Enqueue the fire times one by one; return those that went in (with their run's id)
    and those whose run a unique task's active run kept out. A fire time already stored
    is neither: it fired before."""
    task = task_for(schedule)
    backend = task.get_backend()
    if not stores_runs_in(backend, database):
        return enqueue(schedule, fire_times, now, database), []
    inserted: list[tuple[datetime, str]] = []
    held: list[datetime] = []
    for run in scheduled_runs(backend, task, schedule, fire_times, now):
        try:
            with transaction.atomic(using=database):
                (result,) = backend.save_runs(task, [run])
        except IntegrityError:
            stored = Run.objects.using(database).filter(
                schedule_id=schedule.pk, scheduled_for=run.scheduled_for
            )
            if stored.exists():
                logger.warning(
                    "Schedule %r already fired %s; not enqueued again",
                    schedule.name,
                    run.scheduled_for.isoformat(),
                )
            elif run.unique_key is not None:
                held.append(run.scheduled_for)
            else:
                raise
            continue
        inserted.append((run.scheduled_for, result.id))
    return inserted, held


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
