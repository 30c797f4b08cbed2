"""The worker's line about a failed attempt: which run, why, and what happens next.

Logged by the worker process itself when the attempt comes back (from a task thread, the
event loop or a child process, whose own logging the project's settings do not reach),
on ``taskmill.worker``: WARNING when the run will be retried, ERROR when the failure is
final, WARNING for a run stopped or cancelled on request. At DEBUG (``taskmill worker
-v 2``) the line carries the attempt's traceback.
"""

from __future__ import annotations

import logging

from ..compat import TaskResultStatus
from .execution import Completed

logger = logging.getLogger("taskmill.worker")


def log_failed_attempt(completed: Completed) -> None:
    """One line for an attempt that raised; nothing for a success."""
    if completed.failure is None or completed.outcome.status == TaskResultStatus.SUCCESSFUL:
        return
    outcome = completed.outcome
    if outcome.status == "READY":
        level = logging.WARNING
        delay = (outcome.available_at - outcome.finished_at).total_seconds()
        what = f"failed, retrying in {max(delay, 0.0):.1f}s"
    elif outcome.status == "CANCELLED":
        level, what = logging.WARNING, "cancelled"
    else:
        level, what = logging.ERROR, "failed for good (no retry)"
    if not logger.isEnabledFor(level):
        return
    run = completed.run
    message = f"Run {run.id} ({run.task_path}) attempt {run.attempt} {what}: {completed.failure}"
    if logger.isEnabledFor(logging.DEBUG) and outcome.errors:
        message += "\n" + outcome.errors[-1]["traceback"].rstrip()
    logger.log(level, message)
