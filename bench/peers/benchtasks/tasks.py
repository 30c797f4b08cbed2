"""The benchmark's tasks for the Django-based systems: no-op, probe, CPU-bound, sleeping."""

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
