"""Tasks for the fault suite's hostile-input and forged-row tests (tests/faults).

Workers import this module on demand: a run's task path names it, and it lives in an
installed app (taskmill.registry imports such modules when a run names one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskmill.compat import task


@task
def echo(*args: Any, **kwargs: Any) -> list[Any]:
    """Return what came in, so a test can compare it with what was enqueued."""
    return [list(args), kwargs]


@task
def hostile_return(kind: str) -> Any:
    """Return what no database can store, though the arguments were plain."""
    if kind == "nested":
        value: list[Any] = []
        for _ in range(40):
            value = [value]
        return value
    return {"NUL character": "a\x00b", "lone surrogate": "\udc00"}[kind]


@task
def payload_size(payload: str) -> int:
    return len(payload)


@task
def touch(path: str) -> str:
    """A normal task with an observable effect: proves the worker still runs tasks."""
    Path(path).write_text("ran")
    return path


def not_a_task(path: str) -> None:
    """A plain function in a task module: a forged row naming it must not call it."""
    Path(path).write_text("called")


@task
def raise_hostile(kind: str) -> None:
    """Fail with an error message no database stores as it is (the task builds it)."""
    text = {"NUL character": "a\x00b", "lone surrogate": "\udc00"}[kind]
    raise ValueError(f"bad input {text}")
