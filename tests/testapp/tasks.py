"""Tasks the test suite enqueues and runs in real worker processes."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
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
def warn(message: str) -> None:
    """Says ``message`` on a logger nobody configured, and as a Python warning."""
    logging.getLogger("tests.unconfigured").warning(message)
    warnings.warn(message, UserWarning, stacklevel=1)


@task
def return_unserializable() -> object:
    return object()


@task
def timed_sleep(seconds: float, marker: str) -> str:
    """Records when its body began and ended (wall clock), for the timestamps' tests."""
    _record(f"start {marker} {time.time():.6f}")
    time.sleep(seconds)
    _record(f"end {marker} {time.time():.6f}")
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


# -- Execution options: retries, unique runs, dependencies, callbacks, atomic tasks ----------
# Declared with taskmill.task, which makes taskmill's Task on Django 5.2 as on 6.1.

from django.utils import timezone  # noqa: E402

import taskmill  # noqa: E402


def _no_delay(failures: int, exc: BaseException) -> float:
    return 0


def _stamp(kind: str, context) -> None:
    """Record one attempt: kind, run id, attempt number and when it started."""
    _record(f"{kind} {context.task_result.id} {context.attempt} {timezone.now().isoformat()}")


@taskmill.task(takes_context=True, max_attempts=3, backoff=_no_delay)
def flaky(context, failures: int) -> int:
    """Fails its first ``failures`` attempts, then returns the attempt that succeeded."""
    _stamp("flaky", context)
    if context.attempt <= failures:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return context.attempt


@taskmill.task(takes_context=True, backoff=_no_delay)
def always_fails(context) -> None:
    """Fails every attempt; max_attempts left at 1, for .using(max_attempts=...)."""
    _stamp("always", context)
    raise ConnectionError(f"attempt {context.attempt} failed")


class Transient(ConnectionError):
    """A subclass of what ``picky`` retries."""


@taskmill.task(takes_context=True, max_attempts=3, retry_on=(ConnectionError,), backoff=_no_delay)
def picky(context, kind: str) -> None:
    """Retries only ConnectionError (and subclasses); anything else fails at once."""
    _stamp(f"picky-{kind}", context)
    errors = {"connection": ConnectionError, "transient": Transient, "value": ValueError}
    raise errors[kind](f"{kind} on attempt {context.attempt}")


def _recording_backoff(failures: int, exc: BaseException) -> float:
    delay = 0.3 * failures
    _record(f"backoff {failures} {type(exc).__name__} {delay}")
    return delay


@taskmill.task(takes_context=True, max_attempts=3, backoff=_recording_backoff)
def backing_off(context) -> None:
    """Always fails; its backoff records its arguments and waits 0.3 s, then 0.6 s."""
    _stamp("backing-off", context)
    raise ConnectionError(f"attempt {context.attempt} failed")


@taskmill.task(takes_context=True, max_attempts=3, backoff_base=0.2, backoff_cap=0.3)
def jittered(context) -> None:
    """Always fails; the default backoff (full jitter) with a 0.2 s base and a 0.3 s cap."""
    _stamp("jittered", context)
    raise ConnectionError(f"attempt {context.attempt} failed")


@taskmill.task(max_attempts=2, backoff=lambda failures, exc: 3600)
def retry_in_an_hour() -> None:
    raise ConnectionError("try again later")


@taskmill.task(max_attempts=5, backoff=lambda failures, exc: None if failures >= 2 else 0)
def backoff_gives_up() -> None:
    """Its backoff says no more after the second failure, whatever max_attempts says."""
    raise ConnectionError("again")


@taskmill.task(
    takes_context=True,
    max_attempts=3,
    backoff=_no_delay,
    on_failure="tests.testapp.tasks.note_failure",
)
def fail_after_file(context, path: str) -> None:
    """Waits for ``path``, then fails with a retryable error."""
    _stamp("fail-after-file", context)
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    raise ConnectionError("failed after the file appeared")


@taskmill.task(unique=True)
def unique_job(name: str, **extra) -> str:
    return name


@taskmill.task(unique=True)
def unique_wait(path: str) -> str:
    """A unique task that stays RUNNING until ``path`` exists (two minutes at most)."""
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return path


@taskmill.task(takes_context=True)
def step(context, name: str) -> str:
    """A link in a dependency chain: records when it ran."""
    _stamp(f"step-{name}", context)
    return name


@taskmill.task
def note_success(run_id: str) -> str:
    _record(f"on_success {run_id}")
    return run_id


@taskmill.task
def note_failure(run_id: str) -> str:
    _record(f"on_failure {run_id}")
    return run_id


@taskmill.task(
    takes_context=True,
    max_attempts=2,
    backoff=_no_delay,
    on_success=note_success,  # a task...
    on_failure="tests.testapp.tasks.note_failure",  # ...or its import path
)
def watched(context, failures: int) -> int:
    """Fails its first ``failures`` attempts (two at most); callbacks on either outcome."""
    _stamp("watched", context)
    if context.attempt <= failures:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return context.attempt


@taskmill.task(on_failure=note_failure)
def step_with_callback(name: str) -> str:
    return name


@taskmill.task(atomic=True, on_success=note_success)
def atomic_insert(name: str, fail: bool = False) -> int:
    """Inserts an Effect row, then fails if told to: the row must then not exist."""
    from .models import Effect

    effect = Effect.objects.create(name=name)
    if fail:
        raise RuntimeError(f"failed after inserting {name}")
    return effect.pk


@taskmill.task
def plain_insert(name: str, fail: bool = False) -> int:
    """atomic_insert without atomic=True: a failure keeps the row."""
    from .models import Effect

    effect = Effect.objects.create(name=name)
    if fail:
        raise RuntimeError(f"failed after inserting {name}")
    return effect.pk


@taskmill.task(takes_context=True, atomic=True, max_attempts=2, backoff=_no_delay)
def atomic_flaky(context, name: str) -> int:
    """Inserts a row on every attempt and fails the first: one row must remain."""
    from .models import Effect

    effect = Effect.objects.create(name=f"{name}-{context.attempt}")
    if context.attempt == 1:
        raise ConnectionError("first attempt fails after its insert")
    return effect.pk


@taskmill.task(result_ttl=60)
def short_lived() -> str:
    return "kept a minute"


# Result time-to-live by outcome (tests/test_result_ttl.py): successes a minute, failures 30
# days, cancelled runs kept.
@taskmill.task(result_ttl={"SUCCESSFUL": 60, "FAILED": 30 * 24 * 3600, "CANCELLED": None})
def judged(fail: bool = False) -> str:
    if fail:
        raise ValueError("judged a failure")
    return "judged"


@taskmill.task(takes_context=True, max_attempts=2, backoff=_no_delay)
async def async_flaky(context) -> int:
    """An async task that fails its first attempt: retries on the event loop too."""
    await asyncio.sleep(0)
    if context.attempt == 1:
        raise ConnectionError("async attempt 1 failed")
    return context.attempt


# Task aliases (tests/test_aliases.py): this task was moved here from a module that no longer
# exists; runs and schedules stored under its old path run it.
@taskmill.task(aliases=["tests.testapp.reports_v1.build_report"])
def build_report(day: str) -> str:
    _record(f"build_report {day}")
    return f"report for {day}"
