"""Tasks for tests/test_testing_helper.py: run in the test's own process by run_queued()."""

from __future__ import annotations

import taskmill
from taskmill.compat import task


def _half_a_minute(failures: int, exc: BaseException) -> float:
    # Fixed, not jittered: full jitter may draw a delay short enough to come due mid-test.
    return 30.0


# A real backoff: run_queued() must not wait it out.
@taskmill.task(takes_context=True, max_attempts=3, backoff=_half_a_minute)
def fails_twice(context) -> int:
    if context.attempt <= 2:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return context.attempt


@taskmill.task(on_success="tests.testapp.helper_tasks.remember_success")
def with_callback(value: int) -> int:
    return value * 2


@task
def remember_success(run_id: str) -> str:
    from tests.testapp.models import Effect

    Effect.objects.create(name=f"succeeded {run_id}")
    return run_id


@task
def append_step(name: str) -> str:
    from tests.testapp.models import Effect

    Effect.objects.create(name=name)
    return name


@task
def enqueues_itself(generation: int) -> int:
    enqueues_itself.enqueue(generation + 1)
    return generation
