"""The worker's line about a failed attempt: which run, why, and what happens next.

Logged by the worker process itself when the attempt comes back (from a task thread, the
event loop or a child process, whose own logging the project's settings do not reach),
on ``taskmill.worker``: WARNING when the run will be retried, ERROR when the failure is
final, WARNING for a run stopped or cancelled on request. An attempt the database ended (a
transient error, counted as lost: worker/interruptions.py) says so. At DEBUG (``taskmill
worker -v 2``) the line carries the attempt's traceback.
"""

from __future__ import annotations

import logging

from ..exceptions import counts_as_lost, lost_attempts
from ..status import RunStatus
from .attempt import Completed

logger = logging.getLogger("taskmill.worker")


def log_failed_attempt(completed: Completed) -> None:
    """One line for an attempt that raised; nothing for a success."""
    if completed.failure is None or completed.outcome.status == RunStatus.SUCCESSFUL:
        return
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
    message = f"Run {run.id} ({run.task_path}) attempt {run.attempt} {what}: {completed.failure}"
    if logger.isEnabledFor(logging.DEBUG) and outcome.errors:
        message += "\n" + outcome.errors[-1]["traceback"].rstrip()
    logger.log(level, message)
