"""Whether, and when, a failed attempt runs again."""

from __future__ import annotations

import logging
import random
from typing import Any

from .conf import setting
from .exceptions import RunCancelled
from .tasks import Task, effective_option

logger = logging.getLogger("taskmill.worker")


def default_backoff(failures: int, base: float, cap: float) -> float:
    """Exponential with a cap and full jitter: uniform(0, min(cap, base * 2^(failures-1))).

    Full jitter spreads a burst of failures (a database blip failing a hundred runs) over
    the whole window instead of retrying them in lockstep.
    """
    return random.uniform(0, min(cap, base * 2 ** (failures - 1)))


def retry_delay(
    task: Task, stored_options: dict[str, Any] | None, failures: int, exc: BaseException
) -> float | None:
    """Seconds until the next attempt, or None when this failure is final.

    ``failures`` counts the task's failed attempts including this one (lost workers
    excluded). Cancellations never retry.
    """
    if isinstance(exc, RunCancelled):
        return None
    max_attempts = effective_option(task, stored_options, "max_attempts") or 1
    if failures >= max_attempts:
        return None
    if not isinstance(exc, task.retry_on):
        return None
    if task.backoff is not None:
        try:
            delay = task.backoff(failures, exc)
        except Exception:
            logger.exception("backoff of %s raised; not retrying", task.module_path)
            return None
        return None if delay is None else max(0.0, float(delay))
    base = task.backoff_base or float(setting("TASKMILL_RETRY_BACKOFF_BASE"))
    cap = task.backoff_cap or float(setting("TASKMILL_RETRY_BACKOFF_CAP"))
    return default_backoff(failures, base, cap)
