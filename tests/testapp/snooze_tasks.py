"""Tasks for tests/test_snooze.py: each follows a plan, one letter per attempt (the last one
repeats): S snoozes for ``delay`` seconds, F fails (a ConnectionError, retried), C cancels,
O returns the attempt number. Every attempt records its start and end, every backoff call
what it was given, in the test's record directory."""

from __future__ import annotations

import asyncio

from django.utils import timezone

import taskmill
from taskmill.retries import failed_attempts

from .tasks import _record, note_failure


def _step(context, plan: str, delay: float) -> int:
    attempt = context.attempt
    action = plan[min(attempt, len(plan)) - 1]
    run_id = context.task_result.id
    _record(f"start {run_id} {attempt} {action} {timezone.now().isoformat()}")
    try:
        if action == "S":
            raise taskmill.Snooze(delay)
        if action == "F":
            raise ConnectionError(f"attempt {attempt} failed")
        if action == "C":
            raise taskmill.Cancel(f"attempt {attempt} found nothing to do")
        return attempt
    finally:
        _record(f"end {run_id} {attempt} {action} {timezone.now().isoformat()}")


def recording_backoff(exception: BaseException, task_result) -> float:
    """Django's proposed form: records the failures and attempts it sees, waits 0.2 s per
    failure so far."""
    failures = failed_attempts(task_result)
    delay = 0.2 * failures
    _record(f"backoff {task_result.id} {failures} {task_result.attempts} {delay}")
    return delay


OPTIONS = {"max_attempts": 3, "backoff": recording_backoff, "on_failure": note_failure}


@taskmill.task(takes_context=True, **OPTIONS)
def planned(context, plan: str, delay: float = 0.0) -> int:
    """On a task thread."""
    return _step(context, plan, delay)


@taskmill.task(takes_context=True, **OPTIONS)
async def async_planned(context, plan: str, delay: float = 0.0) -> int:
    """On the worker's event loop."""
    await asyncio.sleep(0)
    return _step(context, plan, delay)


@taskmill.task(takes_context=True, timeout=60, **OPTIONS)
def child_planned(context, plan: str, delay: float = 0.0) -> int:
    """In a child process: the task has a timeout."""
    return _step(context, plan, delay)


@taskmill.task(takes_context=True, atomic=True, **OPTIONS)
def atomic_planned(context, plan: str, delay: float = 0.0) -> int:
    """In the attempt's transaction: each attempt inserts a row first, which only a success
    keeps (a snooze or a cancel rolls it back, as a failure does)."""
    from .models import Effect

    Effect.objects.create(name=f"{context.task_result.id}-{context.attempt}")
    return _step(context, plan, delay)


@taskmill.task(takes_context=True, max_snoozes=2)
def snoozes_twice_at_most(context, plan: str, delay: float = 0.0) -> int:
    return _step(context, plan, delay)


@taskmill.task(takes_context=True, concurrency_limit=1)
def one_at_a_time(context, plan: str, delay: float = 0.0) -> int:
    """At most one RUNNING run of this task, across every worker."""
    return _step(context, plan, delay)


VARIANTS = {
    "thread": planned,
    "event loop": async_planned,
    "child process": child_planned,
    "atomic": atomic_planned,
}
