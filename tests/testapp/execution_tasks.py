"""Tasks for the execution tests: rescue, fencing, timeouts, stops."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import taskmill

from .tasks import _record


@taskmill.task(takes_context=True)
def block_first_attempt(context, name: str) -> str:
    """Attempt 1 blocks (until its worker is killed); later attempts succeed."""
    _record(f"start {name} {context.attempt} {os.getpid()}")
    if context.attempt == 1:
        time.sleep(300)
    return f"done {name}"


@taskmill.task(takes_context=True)
def fenced_probe(context, release_path: str) -> str:
    """Attempt 1 waits for a file; later attempts return at once."""
    _record(f"probe {context.attempt}")
    if context.attempt == 1:
        deadline = time.monotonic() + 120
        while not os.path.exists(release_path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "first"
    return "second"


@taskmill.task(timeout=1, max_attempts=2, backoff=lambda attempt, exc: 0)
def sleep_past_timeout(pid_path: str) -> None:
    """Writes its pid and its grandchild's, then sleeps far past its 1 s timeout."""
    child = subprocess.Popen(["sleep", "300"])
    Path(pid_path).with_suffix(f".{os.getpid()}").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(300)


@taskmill.task(timeout=20)
def quick_with_timeout(value: int) -> int:
    return value * 2


@taskmill.task(takes_context=True)
def cooperative_loop(context) -> str:
    _record(f"looping {context.task_result.id}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if context.stop_requested:
            raise RuntimeError("stopping as asked")
        time.sleep(0.01)
    return "never stopped"


@taskmill.task(timeout=60)
def sleep_in_child(seconds: float) -> float:
    _record(f"child {os.getpid()}")
    time.sleep(seconds)
    return seconds


@taskmill.task
async def async_forever() -> None:
    _record("async started")
    import asyncio

    await asyncio.sleep(300)


@taskmill.task(timeout=0.5)
async def async_past_timeout() -> None:
    import asyncio

    await asyncio.sleep(300)


@taskmill.task(takes_context=True, atomic=True)
def atomic_effect_then_block(context, name: str) -> str:
    """Inserts its row inside the attempt's transaction; attempt 1 then blocks until its
    worker is killed, so the insert must roll back with it."""
    from .models import Effect

    Effect.objects.create(name=name)
    _record(f"inserted {name} {context.attempt}")
    if context.attempt == 1:
        time.sleep(300)
    return name


@taskmill.task
def long_query() -> None:
    """Runs a query that lasts five minutes: only cancelling it on the server stops it."""
    from django.db import connection

    _record("query started")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(300)")


@taskmill.task(timeout=30)
def fail_in_child(message: str) -> None:
    """Raises in the child process that a task with a timeout runs in."""
    raise ValueError(message)


@taskmill.task
async def async_fail(message: str) -> None:
    raise ValueError(message)
