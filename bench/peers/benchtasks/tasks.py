"""The benchmark's tasks for the Django-based systems: no-op, probe, CPU-bound, sleeping,
and taskmill's limited ones."""

from __future__ import annotations

import os
import time

from common import burn_cpu, record_probe


def q2_noop() -> None:
    """django-q2 runs plain functions by import path."""


def q2_probe(k: int) -> None:
    record_probe(k)


if os.environ.get("BENCH_PEER") != "django-q2":
    from django.tasks import task

    @task
    def noop() -> None:
        return None

    @task
    def probe(k: int) -> None:
        record_probe(k)

    @task
    def cpu10() -> None:
        burn_cpu(10)

    @task
    def sleep10() -> None:
        time.sleep(0.01)

    @task
    def nap(ms: int) -> None:
        """Sleeps ``ms`` milliseconds: the queue-limit figures' tasks (bench/limits.py)."""
        time.sleep(ms / 1000)

    @task(queue_name="limited")
    def nap_limited(ms: int) -> None:
        """The same in the queue the queue-limit figures limit (BENCH_QUEUE_LIMITS)."""
        time.sleep(ms / 1000)


if os.environ.get("BENCH_PEER") == "taskmill":
    import taskmill

    # The per-key figures (bench/limits.py): one no-op called with a key, with a limit of 1
    # per key, and without a limit (the same call, the drain it is set against).
    @taskmill.task(concurrency_limit=1, concurrency_key="key")
    def keyed(*, key: str) -> None:
        return None

    @taskmill.task
    def unkeyed(*, key: str) -> None:
        return None
