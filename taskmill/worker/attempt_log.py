"""The worker's line about each attempt that ended: which run, how it ended, what happens next.

Logged by the worker process itself when the attempt comes back (from a task thread, the
event loop or a child process, whose own logging the project's settings do not reach),
on ``taskmill.worker``: INFO for a success or a snooze, WARNING when the run will be
retried, ERROR when the failure is final, WARNING for a run stopped or cancelled on
request. An attempt the database ended (a transient error, counted as lost:
worker/interruptions.py) says so; one lost otherwise (its worker fenced itself) is said by
lost.py, which decides it.

Each line carries the run's and the outcome's fields (taskmill.logs: run id, task, attempt,
queue, outcome, duration), and a failure's line the attempt's traceback: a JSON line holds
it whatever the level; a text line shows it at DEBUG (``taskmill worker -v 2``), after the
message, as a logged exception's traceback is shown.

A success is the hot path (thousands a second): with INFO off, it costs one
``isEnabledFor``, and no message or fields are built.
"""

from __future__ import annotations

import logging
from typing import Any

from ..db.stats import SNOOZED
from ..exceptions import counts_as_lost, lost_attempts
from ..logs import DURATION, OUTCOME, TRACEBACK, run_fields
from ..status import RunStatus
from .attempt import Completed

logger = logging.getLogger("taskmill.worker")


def log_ended_attempt(completed: Completed) -> None:
    """One line for an attempt that came back, unless lost.py said it already."""
    outcome = completed.outcome
    if outcome.status == RunStatus.SUCCESSFUL:
        if logger.isEnabledFor(logging.INFO):
            _log_success(completed)
    elif completed.failure is not None:
        _log_failure(completed)
    elif outcome.snoozes is not None and logger.isEnabledFor(logging.INFO):  # a snooze
        _log_snooze(completed)


def _fields(completed: Completed, outcome: str) -> dict[str, Any]:
    return run_fields(
        completed.run,
        # Microseconds: more digits would be the clock's noise.
        **{OUTCOME: outcome, DURATION: round(completed.duration, 6)},
    )


def _log_success(completed: Completed) -> None:
    run = completed.run
    logger.info(
        "Run %s (%s) attempt %d succeeded in %.3fs",
        run.id,
        run.task_path,
        run.attempt,
        completed.duration,
        extra=_fields(completed, str(RunStatus.SUCCESSFUL)),
    )


def _log_snooze(completed: Completed) -> None:
    run, outcome = completed.run, completed.outcome
    assert outcome.available_at is not None
    delay = max((outcome.available_at - outcome.finished_at).total_seconds(), 0.0)
    logger.info(
        "Run %s (%s) attempt %d snoozed for %gs after %.3fs",
        run.id,
        run.task_path,
        run.attempt,
        delay,
        completed.duration,
        extra=_fields(completed, SNOOZED),
    )


def _log_failure(completed: Completed) -> None:
    outcome = completed.outcome
    lost = bool(outcome.errors) and counts_as_lost(outcome.errors[-1])
    if outcome.status == RunStatus.READY:
        level = logging.WARNING
        delay = (outcome.available_at - outcome.finished_at).total_seconds()
        what = f"failed, retrying in {max(delay, 0.0):.1f}s"
        if lost:
            what = (
                f"ended by a database error, not by its task; it goes again in "
                f"{max(delay, 0.0):.1f}s, a lost attempt (no attempt of max_attempts used)"
            )
    elif outcome.status == RunStatus.CANCELLED:
        level, what = logging.WARNING, "cancelled"
    elif lost:
        level = logging.ERROR
        what = (
            f"ended by a database error, {lost_attempts(outcome.errors)} lost attempts, "
            "the limit (TASKMILL_MAX_LOST_ATTEMPTS): failed for good"
        )
    else:
        level, what = logging.ERROR, "failed for good (no retry)"
    if not logger.isEnabledFor(level):
        return
    run = completed.run
    extra = _fields(completed, str(outcome.status))
    traceback = outcome.errors[-1].get("traceback", "").rstrip() if outcome.errors else ""
    if traceback:
        extra[TRACEBACK] = traceback
    message = f"Run {run.id} ({run.task_path}) attempt {run.attempt} {what}: {completed.failure}"
    # Made by hand to set its exc_text: the traceback is text (it may come from a child
    # process), not an exception this thread holds, and exc_text is where every formatter
    # looks for one; a text line then shows it after the message, as before.
    filename, lineno, function, _ = logger.findCaller()
    record = logger.makeRecord(
        logger.name, level, filename, lineno, message, None, None, function, extra
    )
    if traceback and logger.isEnabledFor(logging.DEBUG):
        record.exc_text = traceback
    logger.handle(record)
