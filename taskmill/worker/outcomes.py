"""Writing a batch of finished attempts: the fenced outcomes, their callbacks and dependents,
then the ``task_finished`` signal for those that landed."""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction

from ..compat import task_finished
from ..db import Engine
from ..db.base import Landed
from ..followups import enqueue_callbacks, resolve_dependents
from ..results import result_of
from .execution import Completed, signal_sender

logger = logging.getLogger("taskmill.worker")


def write_outcomes(engine: Engine, database: str, batch: list[Completed]) -> dict[int, Landed]:
    """Write the outcomes of ``batch`` not written yet; return those that landed, by run id.

    In one transaction with their callbacks and dependents when the batch has callbacks or
    runs known (at claim) to have dependents. A dependent enqueued while its dependency ran
    is learnt from the finish itself and settled right after, in a transaction of its own;
    if that fails, the lifeline's sweep settles it later.
    """
    pending = [completed for completed in batch if not completed.recorded]
    if not pending:
        return {}
    outcomes = [completed.outcome for completed in pending]
    follow_up = any(
        completed.run.has_dependents
        or getattr(completed.task, "on_success", None)
        or getattr(completed.task, "on_failure", None)
        for completed in pending
    )
    if not follow_up:
        # The common case stays one statement (one round trip on PostgreSQL).
        landed = engine.finish(outcomes)
        late = [run_id for run_id, row in landed.items() if row.has_dependents]
        if late:
            try:
                resolve_dependents(database, late)
            except DatabaseError as exc:
                logger.warning("Dependents of %s left for the sweep: %s", late, exc)
        return landed
    with transaction.atomic(using=database):
        landed = engine.finish(outcomes)
        for completed in pending:
            row = landed.get(completed.run.id)
            if row is not None:
                enqueue_callbacks(completed.task, completed.run.id, row.status)
        finished = [run_id for run_id, row in landed.items() if row.has_dependents]
        if finished:  # one pass for the whole batch
            resolve_dependents(database, finished)
    return landed


def send_finished(completed: Completed, status: str) -> None:
    """``task_finished`` for an outcome that landed, as Django's API would report it."""
    run, outcome = completed.run, completed.outcome
    result = result_of(
        completed.task,
        run,
        status=status,
        finished_at=outcome.finished_at,
        errors=outcome.errors,
        return_value=outcome.return_value,
    )
    try:
        task_finished.send(signal_sender(run), task_result=result)
    except Exception:
        logger.exception("A task_finished receiver raised for run %s", run.id)
