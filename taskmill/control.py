"""The control API: what the admin's buttons and a project's own code call.

Requests travel through the database: a cancelled READY run is cancelled at once; a stop
of a RUNNING run sets a flag the worker's heartbeat reads (within a second on PostgreSQL,
where a NOTIFY makes the worker look at once; elsewhere within a heartbeat). Every
function takes ``database`` (the alias holding the runs, default "default") and returns
whether it changed anything.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .batches.settle import uncount_member
from .db import get_engine
from .db.errors import retried
from .exceptions import RunCancelled, TaskmillError, synthetic_error
from .followups import cancel_unstarted
from .limits.gate import settle_slots
from .models import FINISHED_STATUSES, Queue, Run, RunStatus, Worker
from .wakeup import wake_after_commit

CONTROL_WAKEUP = "taskmill:control"


class RunConflict(TaskmillError, ValueError):
    """A control request that would break a rule the database keeps (a unique key)."""


def _run_id(run: Any) -> int:
    return int(getattr(run, "id", run))


def run_status(run: Any, *, database: str = "default") -> str:
    """A run's true status (``RunStatus``): WAITING and CANCELLED included, which Django's
    API shows as READY and FAILED."""
    return Run.objects.using(database).values_list("status", flat=True).get(pk=_run_id(run))


def cancel(run: Any, *, database: str = "default", reason: str = "cancelled on request") -> bool:
    """Cancel a run: a READY or WAITING one never runs; a RUNNING one is stopped (``stop``).
    Cancelled is final: never retried. Runs that depend on it are cancelled too."""
    return retried(lambda: _cancel(run, database, reason), database)


def _cancel(run: Any, database: str, reason: str) -> bool:
    run_id = _run_id(run)
    now = timezone.now()
    with transaction.atomic(using=database):
        row = Run.objects.using(database).select_for_update().filter(pk=run_id).first()
        if row is None or row.status in FINISHED_STATUSES:
            return False
        if row.status == RunStatus.RUNNING:
            return _request_stop(row, database)
        error = synthetic_error(RunCancelled, reason)
        cancel_unstarted(database, row, error, now, has_dependents=row.has_dependents)
    return True


def stop(run: Any, *, database: str = "default") -> bool:
    """Stop a RUNNING run: a child process is killed, an async task cancelled, a thread's
    task sees ``context.stop_requested`` (and on PostgreSQL its running query is
    cancelled). The run ends CANCELLED. A run not yet running is cancelled."""
    return cancel(run, database=database, reason="stopped on request")


def _request_stop(row: Run, database: str) -> bool:
    if row.stop_requested:
        return False
    Run.objects.using(database).filter(pk=row.pk, status=RunStatus.RUNNING).update(
        stop_requested=True
    )
    get_engine(database).notify(CONTROL_WAKEUP)
    return True


def retry(run: Any, *, database: str = "default") -> bool:
    """Run a FAILED or CANCELLED run once more: the same run, its errors kept, READY now.

    Raises ``RunConflict`` if a newer run with the same unique key is active."""
    run_id = _run_id(run)
    now = timezone.now()
    try:
        with transaction.atomic(using=database):
            return _retry(run_id, now, database)
    except IntegrityError:
        # The unique index: a newer run with the same unique key is active.
        raise RunConflict(
            f"Run {run_id} cannot run again while another run of its task with the same "
            "unique key is ready or running."
        ) from None


def _retry(run_id: int, now: Any, database: str) -> bool:
    ended = (
        Run.objects.using(database)
        .select_for_update()
        .filter(pk=run_id, status__in=[RunStatus.FAILED, RunStatus.CANCELLED])
        .values("status", "batch_id")
        .first()
    )
    if ended is None:
        return False
    updated = (
        Run.objects.using(database)
        .filter(pk=run_id, status__in=[RunStatus.FAILED, RunStatus.CANCELLED])
        .update(
            status=RunStatus.READY,
            due=True,
            held_by=None,
            available_at=now,
            finished_at=None,
            expires_at=None,
            stop_requested=False,
            return_value=None,
        )
    )
    if updated:
        if ended["batch_id"] is not None:
            # Pending in its batch again: its next outcome counts, not the one it had.
            uncount_member(database, ended["batch_id"], ended["status"])
        queue_name = Run.objects.using(database).values_list("queue_name", flat=True).get(pk=run_id)
        wake_after_commit(database, queue_name)
    return bool(updated)


def pause_queue(name: str, *, database: str = "default") -> bool:
    """Stop handing out runs of queue ``name`` (running ones go on). Takes effect at once:
    the claim itself skips paused queues."""
    row, _created = Queue.objects.using(database).get_or_create(pk=name)
    if row.paused:
        return False
    Queue.objects.using(database).filter(pk=name).update(paused=True, paused_at=timezone.now())
    return True


def resume_queue(name: str, *, database: str = "default") -> bool:
    with transaction.atomic(using=database):
        updated = (
            Queue.objects.using(database)
            .filter(pk=name, paused=True)
            .update(paused=False, paused_at=None)
        )
        if updated:
            # A freed slot passes over the held runs of a paused queue: the keys holding
            # runs of this one look again now, not at their backstop.
            keys = (
                Run.objects.using(database)
                .filter(status=RunStatus.READY, queue_name=name, held_by__isnull=False)
                .values_list("held_by", flat=True)
                .order_by()
                .distinct()
            )
            held_by = sorted(set(keys))
            if held_by:
                settle_slots(database, (), held_by)
            wake_after_commit(database, name)
    return bool(updated)


def shutdown_worker(worker_id: str, *, database: str = "default") -> bool:
    """Ask a worker to shut down gracefully (as SIGTERM would): it stops claiming, lets its
    tasks finish within its shutdown timeout, and exits."""
    updated = (
        Worker.objects.using(database)
        .filter(pk=worker_id, shutdown_requested=False)
        .exclude(state=Worker.State.STOPPED)
        .update(shutdown_requested=True)
    )
    if updated:
        get_engine(database).notify(CONTROL_WAKEUP)
    return bool(updated)
