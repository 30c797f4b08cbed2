"""Tasks for tests/test_metadata.py: metadata and progress written by running tasks
(Django's proposal new-features#141, ``context.set_progress``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import taskmill

from .tasks import _record

# How long a task waits for the test's release file before giving up (a test that died).
RELEASE_DEADLINE = 120.0


def _wait_for(release_path: str) -> None:
    deadline = time.monotonic() + RELEASE_DEADLINE
    while not os.path.exists(release_path) and time.monotonic() < deadline:
        time.sleep(0.01)


@taskmill.task(takes_context=True)
def save_then_wait(context, release_path: str) -> dict:
    """Saves a stage while it runs, waits for the test, then changes the metadata without
    saving it: the outcome writes it. Returns what its context saw at the start."""
    seen = dict(context.metadata)
    context.metadata["stage"] = "loading"
    context.save_metadata()
    _record(f"saved {context.task_result.id}")
    _wait_for(release_path)
    context.metadata["stage"] = "done"
    return seen


@taskmill.task(takes_context=True)
def progress_loop(context, rows: int, pause: float) -> int:
    """Reports progress for every row, as a loop over rows would."""
    _record(f"loop began {time.time():.6f}")
    for row in range(1, rows + 1):
        context.set_progress(row, rows, f"row {row} of {rows}")
        time.sleep(pause)
    _record(f"loop ended {time.time():.6f}")
    return rows


@taskmill.task(takes_context=True)
def save_after_release(context, release_path: str) -> str:
    """Attempt 1 waits for the test (its worker frozen meanwhile, its run rescued), then
    saves: a stale attempt's save. Later attempts save at once."""
    _record(f"waiting {context.attempt}")
    if context.attempt == 1:
        _wait_for(release_path)
    context.metadata["by"] = f"attempt {context.attempt}"
    context.save_metadata()  # must not raise, even refused
    _record(f"saved {context.attempt}")
    return f"attempt {context.attempt}"


@taskmill.task(takes_context=True)
async def async_progress(context, rows: int, release_path: str) -> int:
    for row in range(1, rows + 1):
        await context.aset_progress(row, rows, "async rows")
        await asyncio.sleep(0.001)
    context.metadata["async"] = True
    await context.asave_metadata()
    while not os.path.exists(release_path):
        await asyncio.sleep(0.01)
    return rows


@taskmill.task(takes_context=True, max_attempts=2, backoff=lambda exception, result: 0)
def fails_once_with_metadata(context) -> dict:
    """Attempt 1 saves a key, sets another without saving, then fails; attempt 2 returns
    what it found in its context."""
    if context.attempt == 1:
        context.metadata["saved"] = "by attempt 1"
        context.save_metadata()
        context.metadata["unsaved"] = "left by attempt 1"
        raise ConnectionError("attempt 1 fails")
    return dict(context.metadata)


@taskmill.task(takes_context=True, timeout=60)
def saves_in_child(context) -> int:
    """A task with a timeout runs in a child process: it saves through its own connection,
    and its last progress report comes back with the outcome."""
    context.metadata["pid"] = os.getpid()
    context.save_metadata()
    for row in range(1, 101):
        context.set_progress(row, 100)
    return os.getpid()


@taskmill.task(takes_context=True, atomic=True)
def atomic_saves(context, name: str) -> str:
    """Its save is part of the attempt's transaction (it commits with the success)."""
    context.metadata["name"] = name
    context.save_metadata()
    return name


@taskmill.task(takes_context=True)
def leaves_unstorable_metadata(context) -> None:
    context.metadata["when"] = Path("/not/json")


@taskmill.task(takes_context=True)
def saves_unstorable_metadata(context) -> str:
    context.metadata["when"] = {1, 2}
    try:
        context.save_metadata()
    except TypeError as exc:
        del context.metadata["when"]
        return str(exc)
    return "saved"


@taskmill.task(takes_context=True)
def reports_bad_progress(context) -> list[str]:
    said = []
    for args in [("three", 10), (1, float("nan")), (-1, 10), (1, 10, 42)]:
        try:
            context.set_progress(*args)
        except (TypeError, ValueError) as exc:
            said.append(f"{type(exc).__name__}: {exc}")
    return said


@taskmill.task
def plain(value: int) -> int:
    return value
