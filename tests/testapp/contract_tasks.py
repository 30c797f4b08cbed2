"""Tasks for tests/test_django_contract.py: what Django's own backends would make of them is
what taskmill must make of them too."""

from __future__ import annotations

from typing import Any

import taskmill
from taskmill import task


@task
def echo(*args: Any, **kwargs: Any) -> list[Any]:
    """Return what came in, as the task received it."""
    return [list(args), kwargs]


@task
def identity(value: Any) -> Any:
    """Return the one argument as the task received it (as deep as an argument may be)."""
    return value


class NotJson:
    """A return value no JSON can hold."""


# One task for each way a worker calls a task body: a task thread, a child process (a sync
# task with a timeout), the event loop, and a transaction around body and outcome.


@task
def returns_not_json() -> NotJson:
    return NotJson()


@taskmill.task(timeout=60)
def returns_not_json_in_a_child() -> NotJson:
    return NotJson()


@task
async def returns_not_json_async() -> NotJson:
    return NotJson()


@taskmill.task(atomic=True)
def returns_not_json_atomically(name: str) -> NotJson:
    """Inserts an Effect row first: the failed run must leave none."""
    from .models import Effect

    Effect.objects.create(name=name)
    return NotJson()
