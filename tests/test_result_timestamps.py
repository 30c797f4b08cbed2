"""What a TaskResult's timestamps and status say is true: ``started_at`` is when the last
attempt's body began, and a run waiting in a worker's backlog does not read RUNNING.

Django's docs: ``started_at`` is "the time when the Task began execution", RUNNING means "the
Task is currently being executed". A worker claims runs ahead of its free slots (prefetch),
so the claim's time is not a run's start.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from taskmill.compat import TaskResultStatus
from taskmill.models import Run
from tests.conftest import FAST_LEASES, read_records, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def body_times(record_dir: Path) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """marker -> (start, end) of each timed_sleep body, as the body itself read the clock."""
    seen: dict[str, dict[str, dt.datetime]] = {}
    for line in read_records(record_dir):
        kind, marker, stamp = line.split()
        seen.setdefault(marker, {})[kind] = dt.datetime.fromtimestamp(float(stamp), dt.UTC)
    return {marker: (times["start"], times["end"]) for marker, times in seen.items()}


def test_started_at_is_when_each_body_began_not_when_the_worker_claimed_it(run_worker, record_dir):
    results = [tasks.timed_sleep.enqueue(0.3, f"run{n}") for n in range(4)]
    worker = run_worker("--concurrency", "1", "--burst", "--no-scheduler")
    bodies = body_times(record_dir)
    previous_finish = None
    for n, result in enumerate(results):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, worker.output
        began, ended = bodies[f"run{n}"]
        # The body read the clock a moment after the worker marked its start.
        assert dt.timedelta(0) <= began - result.started_at < dt.timedelta(milliseconds=50)
        assert dt.timedelta(0) <= result.finished_at - ended < dt.timedelta(milliseconds=50)
        # One slot: each run starts after the one before it finished.
        if previous_finish is not None:
            assert result.started_at >= previous_finish
        previous_finish = result.finished_at
        assert result.last_attempted_at == result.started_at
        assert len(result.worker_ids) == 1
    run = Run.objects.get(pk=int(results[-1].id))
    assert run.started_at == results[-1].started_at  # what the admin's columns read


def test_finished_minus_started_is_the_body_duration_in_the_rollups_too(run_worker):
    from taskmill.models import RunStats

    result = tasks.timed_sleep.enqueue(0.2, "once")
    run_worker("--concurrency", "1", "--burst", "--no-scheduler")
    result.refresh()
    duration = (result.finished_at - result.started_at).total_seconds()
    assert 0.2 <= duration < 1.0
    (stats,) = RunStats.objects.filter(task_path=tasks.timed_sleep.module_path)
    assert stats.duration_sum == pytest.approx(duration, abs=0.002)


def test_a_run_waiting_in_a_workers_backlog_reads_ready_within_a_heartbeat(start_worker, tmp_path):
    gate = tmp_path / "open"
    holding = tasks.wait_for_file.enqueue(str(gate))
    waiting = tasks.add.enqueue(1, 2)
    # One slot, heartbeats every 0.2 s: the first claim takes the slot's run and one more.
    worker = start_worker("--concurrency", "1", "--no-scheduler", env=FAST_LEASES)
    try:
        # Both marks at once: on a loaded machine a heartbeat can come before the slot's
        # body begins and mark both runs waiting, until the next one unmarks the first.
        wait_until(
            lambda: (
                Run.objects.filter(pk=int(waiting.id), status="RUNNING", prefetched=True).exists()
                and Run.objects.filter(
                    pk=int(holding.id), status="RUNNING", prefetched=False
                ).exists()
            ),
            message=lambda: f"the second run claimed and marked waiting:\n{worker.output}",
        )
        holding.refresh()
        assert holding.status == TaskResultStatus.RUNNING
        assert holding.started_at is not None
        waiting.refresh()
        assert waiting.status == TaskResultStatus.READY
        assert waiting.started_at is None and waiting.last_attempted_at is None
        assert waiting.worker_ids == []
        before = timezone.now()
        gate.touch()
        wait_until(lambda: waiting.refresh() or waiting.is_finished, message=worker.output)
        holding.refresh()
        assert waiting.status == TaskResultStatus.SUCCESSFUL
        assert waiting.started_at >= holding.finished_at
        assert waiting.started_at >= before
        assert waiting.worker_ids == holding.worker_ids
    finally:
        gate.touch()
