"""Tasks for tests/test_django_proposals.py (Django's proposals #142 and #161), run in the
test's own process by run_queued(): what their backoffs are given lands in ``calls``."""

from __future__ import annotations

from typing import Any

import taskmill
from taskmill.compat import TaskResult
from taskmill.retries import failed_attempts

# One entry per backoff call, in order: the test reads what each backoff was given.
calls: list[dict[str, Any]] = []


def first_in_two_minutes(exception: BaseException, task_result: TaskResult) -> float | None:
    """The proposal's form: waits 120 s after the first failure, gives up after the second."""
    calls.append(
        {
            "backoff": "new",
            "exception": exception,
            "id": task_result.id,
            "status": task_result.status,
            "attempts": task_result.attempts,
            "errors": [error.exception_class_path for error in task_result.errors],
            "tracebacks": [error.traceback for error in task_result.errors],
        }
    )
    return None if failed_attempts(task_result) >= 2 else 120.0


@taskmill.task(takes_context=True, max_attempts=5, backoff=first_in_two_minutes)
def fails_with_new_backoff(context) -> None:
    raise ConnectionError(f"attempt {context.attempt} failed")


def counted_backoff(failures: int, exc: BaseException) -> float:
    """taskmill's deprecated form; made a task's backoff by the test, inside pytest.warns."""
    calls.append({"backoff": "old", "failures": failures, "exception": exc})
    return 0


def fails_for_old_backoff() -> None:
    """Made a task by the test (with ``counted_backoff``), so its warning is seen there."""
    raise ConnectionError("old form")


def own_backoff(exception: BaseException, task_result: TaskResult) -> float:
    calls.append({"backoff": "own", "id": task_result.id})
    return 0


@taskmill.task
def fails_plainly() -> None:
    """No max_attempts, no backoff: the backend's OPTIONS decide."""
    raise ConnectionError("plain")


@taskmill.task(max_attempts=2)
def fails_with_own_attempts() -> None:
    raise ConnectionError("own attempts")


@taskmill.task(backoff=own_backoff)
def fails_with_own_backoff() -> None:
    raise ConnectionError("own backoff")


@taskmill.task(backoff_base=0.001)
def fails_with_own_jitter() -> None:
    """Its own backoff_base: the default jitter, not the backend's BACKOFF."""
    raise ConnectionError("own jitter")


@taskmill.task
def remember(value: Any) -> Any:
    return value
