"""What follows a run's outcome: its attempt in the rollups, its callbacks, and the runs
that depend on it.

All of it is written in the transaction that records the outcome, so a crash cannot record
the outcome and lose what follows it (or the other way round). ``settle`` is the one place
every outcome passes, whichever way the run got there: a worker's batch of outcomes, an
atomic attempt, a rescue that gives up, a cancel of a run that never started. What is added
to "what follows" (batch counters, limit slots) is added there, once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from . import registry
from .batches.membership import outside_batch
from .batches.settle import settle_members
from .compat import InvalidTask
from .db import get_engine
from .db.records import ClaimedRun, Landed
from .db.stats import Ended
from .exceptions import DependencyFailed, synthetic_error
from .limits import gate
from .models import ACTIVE_STATUSES, FINISHED_STATUSES, Run, RunDependency, RunStatus
from .tasks import (
    DEPENDENCY_FAILURE_CANCELS,
    DEPENDENCY_FAILURE_RUNS,
    effective_option,
    expiry_for,
)
from .wakeup import wake_after_commit

logger = logging.getLogger("taskmill.worker")

FAILED_FOR_GOOD = (RunStatus.FAILED, RunStatus.CANCELLED)


def callback_path(task: object, status: str) -> str | None:
    """The task to enqueue after a run of ``task`` ended with ``status``, if any."""
    if status == RunStatus.SUCCESSFUL:
        return getattr(task, "on_success", None)
    if status in FAILED_FOR_GOOD:
        return getattr(task, "on_failure", None)
    return None


def enqueue_callbacks(task: object | None, run_id: int, status: str) -> None:
    """Enqueue the callback of ``task`` for a run that ended with ``status``, if it has one."""
    path = callback_path(task, status)
    if path:
        enqueue_callback(path, run_id)


def enqueue_callback(path: str, run_id: int) -> None:
    """Enqueue the callback task ``path`` with the finished run's result id."""
    try:
        callback = registry.resolve(path)
    except InvalidTask:
        logger.error("Callback %s of run %s is not a registered task; skipped", path, run_id)
        return
    callback.enqueue(str(run_id))


@dataclass(slots=True)
class Settling:
    """An outcome that landed, with what settling it needs."""

    landed: Landed
    task: object | None  # its callbacks; None when the run names no registered task
    # The attempt, for the rollups; None when no attempt ended (a rescue, a cancel).
    ended: Ended | None = None
    # The limits' slots the run held while RUNNING (limits.gate.freed_keys); none if it
    # never started.
    frees: Sequence[str] = ()


def settle(
    database: str,
    settling: Sequence[Settling],
    *,
    dependents: bool = True,
    claimed: list[ClaimedRun] | None = None,
) -> list[int]:
    """What follows these outcomes, in the transaction that wrote them: the attempts in the
    rollups (first: their rows' locks are then held the shortest time), the slots they
    held let go to the runs their limits held back, the callbacks of final ones, and the
    dependents of final ones released or cancelled, in one pass.

    ``dependents=False`` leaves the dependents to the caller, for a transaction of their own
    (a worker's batch that knew of none when it started, to keep its transaction short);
    returns the runs whose dependents are left so. ``claimed``: the runs a claim made in
    the same transaction took, gated here in the same pass over the limits' keys (one
    locking order for the transaction), and left holding those that may start.
    """
    get_engine(database).add_stats(item.ended for item in settling if item.ended is not None)
    freed = [key for item in settling for key in item.frees]
    if freed or (claimed and gate.touches(claimed, database)):
        admitted = gate.settle_slots(database, claimed or (), freed)
        if claimed is not None:
            claimed[:] = admitted
    # After the limits' keys: batches are locked last (taskmill.batches.settle). A callback
    # joins no batch, whatever the code driving this worker is inside.
    with outside_batch():
        settle_members(database, (item.landed for item in settling))
        for item in settling:
            enqueue_callbacks(item.task, item.landed.run_id, item.landed.status)
    finished = [
        item.landed.run_id
        for item in settling
        if item.landed.has_dependents and item.landed.status != RunStatus.READY
    ]
    if finished and dependents:
        resolve_dependents(database, finished)
        return []
    return finished


def resolve_dependents(database: str, finished_ids: Iterable[int]) -> int:
    """Release or cancel the WAITING runs that depend on the runs just finished.

    A dependent whose dependencies all succeeded becomes READY; one with a dependency that
    failed for good or was cancelled is cancelled, naming it, and its own dependents follow.
    Returns how many runs changed. Call inside the transaction that finished the runs.
    """
    changed = 0
    frontier = list(finished_ids)
    now = timezone.now()
    with transaction.atomic(using=database):
        while frontier:
            # A subquery, not a join with DISTINCT: PostgreSQL refuses FOR UPDATE with DISTINCT.
            dependents = RunDependency.objects.using(database).filter(depends_on_id__in=frontier)
            waiting = list(
                Run.objects.using(database)
                .select_for_update()
                .filter(status=RunStatus.WAITING, pk__in=dependents.values("run_id"))
                .order_by("id")
            )
            frontier = []
            for run in waiting:
                outcome = _settle(database, run, now)
                if outcome is not None:
                    changed += 1
                    if outcome == RunStatus.CANCELLED:
                        frontier.append(run.pk)
    return changed


def _settle(database: str, run: Run, now: datetime) -> str | None:
    """Decide a waiting run's fate from its dependencies; None if it must wait on.

    ``on_dependency_failure="cancel"`` (the default): released when all succeeded, cancelled
    as soon as one failed for good. ``"run"``: released once all have ended, however."""
    statuses = dict(
        RunDependency.objects.using(database)
        .filter(run_id=run.pk)
        .values_list("depends_on_id", "depends_on__status")
    )
    if runs_whatever_happens(run):
        released = all(status in FINISHED_STATUSES for status in statuses.values())
    else:
        failed = sorted(pk for pk, status in statuses.items() if status in FAILED_FOR_GOOD)
        if failed:
            cancel_for_dependency(database, run, failed[0], statuses[failed[0]], now)
            return RunStatus.CANCELLED
        released = all(status == RunStatus.SUCCESSFUL for status in statuses.values())
    if released:
        due = run.available_at <= now
        Run.objects.using(database).filter(pk=run.pk, status=RunStatus.WAITING).update(
            status=RunStatus.READY, due=due
        )
        if due:
            wake_after_commit(database, run.queue_name)
        return RunStatus.READY
    return None


def runs_whatever_happens(run: Run) -> bool:
    """Whether a waiting run goes once its dependencies have ended, failed ones included
    (``on_dependency_failure="run"``, per call or on its task)."""
    task = registry.resolve_or_none(run.task_path)
    policy = effective_option(task, run.options, "on_dependency_failure") if task else None
    if policy is None:  # its task is gone from the code: what the run stored, else the default
        policy = (run.options or {}).get("on_dependency_failure", DEPENDENCY_FAILURE_CANCELS)
    return policy == DEPENDENCY_FAILURE_RUNS


def cancel_for_dependency(
    database: str, run: Run, dependency_id: int, dependency_status: str, now: datetime
) -> None:
    word = "was cancelled" if dependency_status == RunStatus.CANCELLED else "failed"
    error = synthetic_error(
        DependencyFailed, f"run {dependency_id}, which this run depends on, {word}"
    )
    # Its own dependents follow through the caller's frontier, not here.
    cancel_unstarted(database, run, error, now, has_dependents=False)


def cancel_unstarted(
    database: str, run: Run, error: dict[str, str], now: datetime, *, has_dependents: bool
) -> None:
    """Write a run that never started (READY or WAITING) as CANCELLED with ``error``, and
    what follows (its on_failure callback; its dependents if ``has_dependents``)."""
    task = registry.resolve_or_none(run.task_path)
    Run.objects.using(database).filter(pk=run.pk).update(
        status=RunStatus.CANCELLED,
        held_by=None,  # no longer waiting for a limit's slot
        finished_at=now,
        errors=[*run.errors, error],
        expires_at=expiry_for(task, run.options, now, RunStatus.CANCELLED),
    )
    landed = Landed(run.pk, run.attempt, RunStatus.CANCELLED, has_dependents, run.batch_id)
    settle(database, [Settling(landed, task)])


def lock_dependencies(database: str, depends_on: Sequence[int]) -> dict[int, str]:
    """Lock the runs a new run depends on (FOR UPDATE); return their statuses by id.

    Raises InvalidTask if one does not exist: call it before inserting the dependent, so a
    refused enqueue inserts nothing and sends no ``task_enqueued``.
    """
    rows = dict(
        Run.objects.using(database)
        .select_for_update()
        .filter(pk__in=list(depends_on))
        .values_list("pk", "status")
    )
    missing = sorted(set(depends_on) - set(rows))
    if missing:
        raise InvalidTask(f"depends_on names runs that do not exist: {missing}.")
    return rows


def settle_new_dependent(database: str, run_id: int, depends_on: Sequence[int]) -> str:
    """At enqueue, for a run inserted as WAITING after ``lock_dependencies`` locked the
    runs it depends on (``depends_on``): mark them as having dependents, link them, and
    settle the run at once if they have all finished.

    The lock orders this against their finish: either the finish committed first and we
    read its outcome here, or it waits for this transaction and then sees the new
    dependent. Returns the run's status after settling.
    """
    # The links are inserted in the order given (a repeated run once): their ids keep it,
    # for context.dependency_results.
    rows = list(dict.fromkeys(depends_on))
    Run.objects.using(database).filter(pk__in=rows, has_dependents=False).update(
        has_dependents=True
    )
    RunDependency.objects.using(database).bulk_create(
        [RunDependency(run_id=run_id, depends_on_id=pk) for pk in rows]
    )
    run = Run.objects.using(database).get(pk=run_id)
    return _settle(database, run, timezone.now()) or RunStatus.WAITING


def settle_strays(database: str, limit: int = 100) -> int:
    """Settle WAITING runs whose dependencies have all finished but that nobody settled (the
    worker that finished the last one died between its two transactions). A sweep, run now
    and then by the lifeline; returns how many it settled."""
    strays = list(
        Run.objects.using(database)
        .filter(status=RunStatus.WAITING)
        .exclude(dependency_links__depends_on__status__in=ACTIVE_STATUSES)
        .values_list("pk", flat=True)
        .order_by("pk")[:limit]
    )
    settled = 0
    now = timezone.now()
    for run_id in strays:
        with transaction.atomic(using=database):
            run = (
                Run.objects.using(database)
                .select_for_update()
                .filter(pk=run_id, status=RunStatus.WAITING)
                .first()
            )
            outcome = _settle(database, run, now) if run is not None else None
            if outcome is not None:
                settled += 1
                if outcome == RunStatus.CANCELLED:
                    resolve_dependents(database, [run_id])
    return settled
