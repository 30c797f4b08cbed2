"""An ``atomic=True`` attempt: its body and its success in one transaction, fenced by the
attempt, so that the body's rows exist once however often the run is rescued."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DatabaseError, connections, transaction

from ...db import get_engine
from ...db.errors import is_transient
from ...db.records import Landed
from ...exceptions import RunCancelled
from ...followups import Settling, settle
from ...limits.gate import freed_keys
from ...logs import run_fields
from ...models import Run
from ...status import RunStatus
from ..attempt import Attempt, Completed
from ..interruptions import retries_on_database_errors
from ..outcomes import ended_attempt

logger = logging.getLogger("taskmill.worker")

# An atomic attempt's transaction is tried this often when the database, not the task, fails
# it (a deadlock, a serialization failure, a lock wait timeout, a dropped connection).
ATOMIC_TRIES = 3


class ResultNotStorable(Exception):
    """Raised inside an atomic attempt to roll back when its return value cannot be stored."""

    def __init__(self, completed: Completed) -> None:
        self.completed = completed


def call_atomic_retrying(attempt: Attempt) -> Completed:
    """``call_atomic``, again in a new transaction when the database failed the last one.

    Its rollback undid everything, so running the body again is safe; a task's own errors
    are not retried here (its retry settings decide).
    """
    run = attempt.run
    for tries in range(1, ATOMIC_TRIES + 1):
        args, kwargs = attempt.arguments()  # afresh: the body may have changed them
        try:
            return call_atomic(attempt, args, kwargs, retry=tries > 1)
        except DatabaseError as exc:
            if not is_transient(exc) or not retries_on_database_errors(attempt.task, run.options):
                raise
            connections[attempt.database].close_if_unusable_or_obsolete()
            if tries == ATOMIC_TRIES:  # the database kept failing it: a lost attempt
                raise
            logger.warning(
                "Run %s: the database failed its atomic transaction (%s); trying again",
                run.id,
                exc,
                extra=run_fields(run),
            )
            time.sleep(0.1 * 2**tries)  # let a deadlock's other party finish
    raise AssertionError("unreachable")


def call_atomic(
    attempt: Attempt, args: list[Any], kwargs: dict[str, Any], retry: bool = False
) -> Completed:
    """Body and success in one transaction, fenced by the attempt.

    The transaction first locks the run's row if it still holds this attempt; rescue (SKIP
    LOCKED) passes over it while we hold it. If the worker dies, the transaction rolls back
    and the rescued attempt starts clean: the body's rows exist once.

    On a ``retry``, the last try's commit may have gone through with its reply lost (the
    connection dropped): a row already SUCCESSFUL under this attempt is that commit, body
    and success together, and stands as this attempt's outcome.
    """
    run, database = attempt.run, attempt.database
    engine = get_engine(database)
    with transaction.atomic(using=database):
        if not engine.lock_attempt(run.id, run.attempt, run.holder):
            done = retry and (
                Run.objects.using(database)
                .filter(pk=run.id, attempt=run.attempt, status=RunStatus.SUCCESSFUL)
                .values("return_value", "has_dependents", "batch_id")
                .first()
            )
            if done:
                completed = attempt.succeeded(done["return_value"], attempt.duration())
                completed.landed = Landed(
                    run.id,
                    run.attempt,
                    RunStatus.SUCCESSFUL,
                    done["has_dependents"],
                    done["batch_id"],
                )
                completed.recorded = True
                return completed
            raise RunCancelled("the run was taken over before its atomic body started")
        value = attempt.call(args, kwargs)
        completed = attempt.succeeded(value, attempt.duration())
        if completed.outcome.status != RunStatus.SUCCESSFUL:
            raise ResultNotStorable(completed)
        landed = engine.finish([completed.outcome], worker_id=run.holder).get(run.id)
        if landed is None:
            raise RunCancelled("the run was taken over while its atomic body ran")
        ended = ended_attempt(completed, landed.status)
        frees = freed_keys(run.queue_name, run.concurrency_key)
        settle(database, [Settling(landed, attempt.task, ended, frees)])
        completed.landed = landed
        completed.recorded = True
    return completed


__all__ = ["ATOMIC_TRIES", "ResultNotStorable", "call_atomic", "call_atomic_retrying"]
