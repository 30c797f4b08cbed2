"""Whether, and when, a failed attempt runs again.

Each setting is looked for in this order: the call's own (``.using(max_attempts=...)``,
stored on the run), the task's, the ``OPTIONS`` of the backend alias the run was enqueued
through (``MAX_ATTEMPTS``, ``BACKOFF``), then taskmill's defaults (one attempt; exponential
backoff with full jitter from ``TASKMILL_RETRY_BACKOFF_BASE``/``_CAP``).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from typing import Any

from .backoff import takes_result
from .compat import TaskError, TaskResult, TaskResultStatus, task_backends
from .conf import seconds, setting
from .exceptions import RunCancelled, task_failures
from .tasks import Task, effective_option

logger = logging.getLogger("taskmill.worker")


def default_backoff(failures: int, base: float, cap: float) -> float:
    """Exponential with a cap and full jitter: uniform(0, min(cap, base * 2^(failures-1))).

    Full jitter spreads a burst of failures (a database blip failing a hundred runs) over
    the whole window instead of retrying them in lockstep.
    """
    return random.uniform(0, min(cap, base * 2 ** (failures - 1)))


def failed_attempts(task_result: TaskResult) -> int:
    """How many of the run's attempts failed by the task's own doing, for a backoff in the
    ``(exception, task_result)`` form: the one being decided included, lost workers not."""
    return task_failures(
        [{"exception_class_path": error.exception_class_path} for error in task_result.errors]
    )


def backend_default(alias: str | None, name: str) -> Any:
    """The ``max_attempts`` or ``backoff`` default of a backend alias's ``OPTIONS``, or None
    (no such option, an alias gone from settings, another framework's backend)."""
    if alias is None:
        return None
    try:
        backend = task_backends[alias]
    except Exception:  # the alias was removed from settings since the run was enqueued
        return None
    return getattr(backend, f"default_{name}", None)


def max_attempts_for(task: Task, stored_options: dict[str, Any] | None, backend: str | None) -> int:
    """A run's attempts in all: the call's, the task's, its backend's ``MAX_ATTEMPTS``, or 1."""
    value = effective_option(task, stored_options, "max_attempts")
    if value is None:
        value = backend_default(backend, "max_attempts")
    return value or 1


def _failing_view(result: TaskResult, errors: list[dict[str, str]] | None) -> TaskResult:
    """The attempt's RUNNING result as its backoff sees it (Django's proposal #142): FAILED,
    its errors ending with this failure. A copy: the attempt's own result is not touched."""
    changes: dict[str, Any] = {"status": TaskResultStatus.FAILED}
    if errors is not None:
        changes["errors"] = [TaskError(**error) for error in errors]
    return dataclasses.replace(result, **changes)


def may_retry(
    task: Task,
    stored_options: dict[str, Any] | None,
    failures: int,
    exc: BaseException,
    *,
    backend: str | None = None,
) -> bool:
    """Whether a failure leaves the run another attempt, before its backoff is asked (which
    may still say None: final). Not a cancellation, attempts left, an exception the task
    retries on. ``retry_delay``'s first question, and the answer worker middleware gets
    (``TaskContext.will_retry``) without calling a backoff that may cost or draw at random."""
    if isinstance(exc, RunCancelled):
        return False
    if failures >= max_attempts_for(task, stored_options, backend):
        return False
    return isinstance(exc, task.retry_on)


def retry_delay(
    task: Task,
    stored_options: dict[str, Any] | None,
    failures: int,
    exc: BaseException,
    *,
    backend: str | None = None,
    task_result: Callable[[], TaskResult] | None = None,
    errors: list[dict[str, str]] | None = None,
) -> float | None:
    """Seconds until the next attempt, or None when this failure is final.

    ``failures`` counts the task's failed attempts including this one (lost workers
    excluded). Cancellations never retry. ``backend`` is the alias the run was enqueued
    through (its ``OPTIONS`` give defaults); ``task_result`` returns the attempt's result,
    called only for a backoff in the ``(exception, task_result)`` form (it costs), and
    ``errors`` the run's errors with this failure last.
    """
    if not may_retry(task, stored_options, failures, exc, backend=backend):
        return None
    backoff = task.backoff
    if backoff is not None:
        new_form = takes_result(backoff)
    elif task.backoff_base is None and task.backoff_cap is None:
        # A task that says nothing about its backoff takes its backend's, if any; the
        # backend checked that one is in the (exception, task_result) form.
        backoff, new_form = backend_default(backend, "backoff"), True
    if backoff is not None:
        try:
            if new_form:
                view = None if task_result is None else _failing_view(task_result(), errors)
                delay = backoff(exc, view)
            else:
                delay = backoff(failures, exc)
            return None if delay is None else max(0.0, seconds(delay))
        except Exception:
            logger.exception("backoff of %s raised; not retrying", task.module_path)
            return None
    base = task.backoff_base or float(setting("TASKMILL_RETRY_BACKOFF_BASE"))
    cap = task.backoff_cap or float(setting("TASKMILL_RETRY_BACKOFF_CAP"))
    return default_backoff(failures, base, cap)
