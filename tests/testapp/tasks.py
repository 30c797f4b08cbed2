"""Tasks the test suite enqueues and runs in real worker processes."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from taskmill.compat import task


def _record(line: str) -> None:
    # Each worker process appends to its own file: a cheap, exact log of what ran where.
    directory = os.environ.get("TASKMILL_TEST_RECORD_DIR")
    if directory:
        with open(Path(directory) / f"{os.getpid()}.log", "a") as log:
            log.write(line + "\n")


@task
def noop() -> None:
    return None


@task
def add(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
def record(context, value=None) -> str:
    _record(f"{context.task_result.id} {context.attempt} {value}")
    return context.task_result.id


@task(takes_context=True)
def attempt_number(context) -> int:
    return context.attempt


@task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task
def return_unserializable() -> object:
    return object()


@task
def sleep_then_record(seconds: float, marker: str) -> str:
    _record(f"start {marker}")
    time.sleep(seconds)
    _record(f"end {marker}")
    return marker


@task
def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """Block until ``path`` exists: lets a test hold a task running as long as it needs."""
    _record(f"waiting {path}")
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return path


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
async def async_sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@task(queue_name="emails", priority=10)
def send_email(to: str) -> str:
    return f"sent to {to}"


def not_a_task() -> str:
    return "plain function"


# Rendezvous tasks prove concurrency without timing: each waits until `parties` of them are
# inside at once, which only happens if the worker really runs that many side by side.
_barriers: dict[str, threading.Barrier] = {}
_barriers_lock = threading.Lock()


@task
def sync_rendezvous(name: str, parties: int, timeout: float = 20.0) -> str:
    with _barriers_lock:
        barrier = _barriers.setdefault(name, threading.Barrier(parties))
    barrier.wait(timeout)
    return threading.current_thread().name


_async_arrivals: dict[str, int] = {}


@task
async def async_rendezvous(name: str, parties: int, timeout: float = 20.0) -> str:
    _async_arrivals[name] = _async_arrivals.get(name, 0) + 1
    deadline = time.monotonic() + timeout
    while _async_arrivals[name] < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {_async_arrivals[name]} of {parties} arrived")
        await asyncio.sleep(0.005)
    return threading.current_thread().name
