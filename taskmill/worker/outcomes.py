"""Writing a batch of finished attempts: the fenced outcomes, their callbacks and dependents,
then the ``task_finished`` signal for those that landed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, transaction

from ..compat import task_finished
from ..db import Engine
from ..db.base import Landed
from ..db.stats import SNOOZED, Ended
from ..followups import Settling, resolve_dependents, settle
from ..limits.gate import freed_keys
from ..logs import run_fields
from ..models import Run
from ..results import result_of
from ..signalling import finished_heard, send
from ..status import RunStatus
from .attempt import Completed, signal_sender

logger = logging.getLogger("taskmill.worker")

Key = tuple[int, int]  # (run id, attempt): one attempt's outcome


def write_outcomes(
    engine: Engine,
    database: str,
    batch: list[Completed],
    in_doubt: Collection[Key] = (),
    claim: Callable[[Sequence[str]], None] | None = None,
    worker_id: str | None = None,
) -> dict[Key, Landed]:
    """Write the outcomes of ``batch`` not written yet; return those that landed, by (run id,
    attempt): a batch may hold a stale attempt's outcome next to the newer attempt of the
    same run (taken away from this worker, then claimed back), and only the newer can land.

    In one transaction with their callbacks and dependents when the batch has callbacks or
    runs known (at claim) to have dependents. A dependent enqueued while its dependency ran
    is learnt from the finish itself and settled right after, in a transaction of its own;
    if that fails, the lifeline's sweep settles it later.

    ``in_doubt`` are the (run id, attempt) of outcomes whose last write failed: it may have
    committed all the same (the connection dropped before the reply). Those found in place
    count as landed (with their follow-ups, written in that same transaction), not as runs
    taken over by someone else.

    ``claim``, if given, is called first in the outcomes' transaction (not at all when there
    is nothing to write): the worker's next claim, committed with them. ``worker_id``: the
    writing worker's, which fences the finish with the attempts (Engine.finish).
    """
    pending = [completed for completed in batch if not completed.recorded]
    if not pending:
        return {}
    landed = _write(engine, database, pending, claim, worker_id)
    doubtful = [
        completed
        for completed in pending
        if key_of(completed) not in landed and key_of(completed) in in_doubt
    ]
    if doubtful:
        earlier = written_earlier(database, doubtful)
        landed.update(earlier)
        late = [row.run_id for row in earlier.values() if row.has_dependents]
        if late:
            _resolve_late(database, late)
    return landed


def key_of(completed: Completed) -> Key:
    return (completed.run.id, completed.run.attempt)


def written_earlier(database: str, pending: list[Completed]) -> dict[Key, Landed]:
    """Those of ``pending`` whose outcome the database already holds, by (run id, attempt).

    An outcome that added an error is known by it (its traceback is this attempt's alone);
    a success by its attempt and finish time, to the microsecond. A rescue always adds an
    error of its own, so a run rescued meanwhile is never mistaken for one we wrote.
    """
    rows = Run.objects.using(database).filter(pk__in=[c.run.id for c in pending])
    current = {row.pk: row for row in rows}
    found: dict[Key, Landed] = {}
    for completed in pending:
        row, outcome = current.get(completed.run.id), completed.outcome
        if row is None or (row.status == RunStatus.RUNNING and row.attempt == outcome.attempt):
            continue
        if len(outcome.errors) > len(completed.run.errors):
            ours = row.errors[: len(outcome.errors)] == outcome.errors
        else:
            ours = row.attempt == outcome.attempt and row.finished_at == outcome.finished_at
        if ours:
            # A retry we wrote may have been claimed again since: report what we wrote.
            status = row.status if row.attempt == outcome.attempt else outcome.status
            found[key_of(completed)] = Landed(
                row.pk, outcome.attempt, status, row.has_dependents, row.batch_id
            )
    return found


def _resolve_late(database: str, run_ids: list[int]) -> None:
    try:
        resolve_dependents(database, run_ids)
    except DatabaseError as exc:
        logger.warning("Dependents of %s left for the sweep: %s", run_ids, exc)


def _write(
    engine: Engine,
    database: str,
    pending: list[Completed],
    claim: Callable[[Sequence[str]], None] | None,
    worker_id: str | None,
) -> dict[Key, Landed]:
    outcomes = [completed.outcome for completed in pending]
    # A batch with follow-ups known before the write (runs known at claim to have
    # dependents, tasks with callbacks) settles dependents in the outcomes' transaction. In
    # the common batch, dependents learnt from the finish (one enqueued while its dependency
    # ran) are settled right after, in a transaction of their own, which keeps it short.
    follow_up = any(
        completed.run.has_dependents
        or getattr(completed.task, "on_success", None)
        or getattr(completed.task, "on_failure", None)
        for completed in pending
    )
    with transaction.atomic(using=database):
        if claim is not None:
            # First: the rollup rows' locks are then held the shortest time. The outcomes'
            # queues: a full one among them has a slot for the claim once they are written.
            claim(sorted({completed.run.queue_name for completed in pending}))
        # Fenced by this worker's id with the attempts (Engine.finish).
        landed = _by_attempt(engine.finish(outcomes, worker_id=worker_id))
        settling = [
            Settling(
                row,
                completed.task,
                ended_attempt(completed, row.status),
                freed_keys(completed.run.queue_name, completed.run.concurrency_key),
            )
            for completed in pending
            if (row := landed.get(key_of(completed))) is not None
        ]
        # The claim's runs are gated with the slots these outcomes free, in one pass.
        claimed = getattr(claim, "runs", None)
        late = settle(database, settling, dependents=follow_up, claimed=claimed)
    if late:
        _resolve_late(database, late)
    return landed


def ended_attempt(completed: Completed, status: str) -> Ended:
    run, outcome = completed.run, completed.outcome
    # The same instants as the run's row: its started_at and finished_at.
    started = outcome.started_at or outcome.finished_at - timedelta(seconds=completed.duration)
    if status == RunStatus.READY and outcome.snoozes is not None:
        status = SNOOZED  # READY again, as a retry is, though nothing failed
    return Ended(
        queue_name=run.queue_name,
        task_path=run.task_path,
        status=status,
        finished_at=outcome.finished_at,
        duration=completed.duration,
        latency=max((started - run.available_at).total_seconds(), 0.0),
    )


def _by_attempt(landed: dict[int, Landed]) -> dict[Key, Landed]:
    return {(row.run_id, row.attempt): row for row in landed.values()}


def send_finished(completed: Completed, status: str) -> None:
    """``task_finished`` for an outcome that landed, as Django's API would report it."""
    if not finished_heard(failed=status in (RunStatus.FAILED, RunStatus.CANCELLED)):
        return
    run, outcome = completed.run, completed.outcome
    # The metadata the outcome wrote, when it wrote some (an attempt in a child process
    # changed its own copy); else the run's, which the context shared.
    written = {} if outcome.metadata is None else {"metadata": outcome.metadata}
    result = result_of(
        completed.task,
        run,
        status=status,
        finished_at=outcome.finished_at,
        errors=outcome.errors,
        return_value=outcome.return_value,
        **written,
    )
    exception, completed.exception = completed.exception, None
    try:
        if exception is None:
            send(task_finished, signal_sender(run), result)
        else:
            _send_in_handler(exception, signal_sender(run), result)
    except Exception:
        logger.exception(
            "A task_finished receiver raised for run %s", run.id, extra=run_fields(run)
        )


def _send_in_handler(exception: BaseException, sender: type, result: Any) -> None:
    """``task_finished`` sent inside a handler of what the attempt raised, as Django's own
    backends send it: receivers read it from ``sys.exc_info()`` (Django's log line carries
    its traceback so). Sent here after the outcome committed, not when the task raised."""
    try:
        raise exception
    except BaseException:
        send(task_finished, sender, result)
