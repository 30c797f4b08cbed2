"""The per-minute rollups that charts and metrics read: what workers add, and the
percentiles read back from their histograms."""

from __future__ import annotations

import math

import pytest
from django.db.models import Sum

from taskmill.models import Run, RunStats, RunStatsHourly
from taskmill.models.stats import BUCKET_BOUNDS_MS, bucket_of, percentile_ms
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

ADD = "tests.testapp.tasks.add"
FLAKY = "tests.testapp.tasks.flaky"
ATOMIC = "tests.testapp.tasks.atomic_insert"


def totals() -> dict[tuple[str, str], int]:
    """What the minute rollups hold per (task, status); the hourly ones must say the same."""
    found = []
    for model in (RunStats, RunStatsHourly):
        rows = model.objects.values("task_path", "status").annotate(n=Sum("count"))
        found.append({(row["task_path"], row["status"]): row["n"] for row in rows})
    assert found[0] == found[1]
    return found[0]


def test_a_worker_adds_each_landed_attempt_once(run_worker):
    tasks.add.enqueue_many([((i, i), {}) for i in range(30)])
    tasks.flaky.enqueue(2)  # two failed attempts, retried, then a success
    tasks.atomic_insert.enqueue("a")  # its success is written by its own transaction
    tasks.atomic_insert.enqueue("b", fail=True)
    run_worker("--burst", "--no-scheduler", "--concurrency", "2")

    assert totals() == {
        (ADD, "SUCCESSFUL"): 30,
        (FLAKY, "READY"): 2,
        (FLAKY, "SUCCESSFUL"): 1,
        (ATOMIC, "SUCCESSFUL"): 1,
        (ATOMIC, "FAILED"): 1,
        ("tests.testapp.tasks.note_success", "SUCCESSFUL"): 1,  # atomic_insert's callback
    }
    # Each row's histograms hold every attempt it counts, once.
    for row in RunStats.objects.all():
        assert sum(row.durations()) == row.count == sum(row.latencies())
        assert row.minute.second == 0 and row.minute.microsecond == 0
        assert row.queue_name == "default"
        assert row.duration_sum >= 0 and row.latency_sum >= 0
    finished = Run.objects.filter(status="SUCCESSFUL").values_list("finished_at", flat=True)
    minutes = {moment.replace(second=0, microsecond=0) for moment in finished}
    assert set(RunStats.objects.filter(status="SUCCESSFUL").values_list("minute", flat=True)) <= (
        minutes
    )


def test_concurrent_workers_add_up_without_losing_an_attempt(start_worker):
    total = 400
    tasks.noop.enqueue_many([((), {})] * total)
    workers = [start_worker("--burst", "--no-scheduler", "--concurrency", "4") for _ in range(3)]
    for worker in workers:
        assert worker.wait(120) == 0, worker.output
    assert Run.objects.filter(status="SUCCESSFUL").count() == total
    assert totals() == {("tests.testapp.tasks.noop", "SUCCESSFUL"): total}


def test_buckets_and_percentiles():
    assert bucket_of(0) == 0 and bucket_of(-3) == 0 and bucket_of(1) == 0
    assert bucket_of(1.01) == 1 and bucket_of(2.5) == 1 and bucket_of(10**9) == 15
    assert len(BUCKET_BOUNDS_MS) == 16 and math.isinf(BUCKET_BOUNDS_MS[-1])
    counts = [0] * 16
    assert percentile_ms(counts, 0.5) is None
    counts[bucket_of(7)] = 100  # all in (5, 10] ms
    assert percentile_ms(counts, 0.5) == pytest.approx(7.5)
    assert percentile_ms(counts, 0.95) == pytest.approx(9.75)
    counts[bucket_of(10**6)] = 100  # as many beyond a minute: p95 says "at least 60 s"
    assert percentile_ms(counts, 0.5) == pytest.approx(10.0)
    assert percentile_ms(counts, 0.95) == 60_000


def test_old_rollups_are_pruned_by_the_worker():
    from datetime import timedelta

    from django.utils import timezone

    from taskmill.pruning import prune_stats

    now = timezone.now().replace(second=0, microsecond=0)
    for age in (timedelta(days=9), timedelta(days=7)):
        RunStats.objects.create(minute=now - age, queue_name="q", task_path="t", status="FAILED")
    assert prune_stats("default", now) == 1
    assert list(RunStats.objects.values_list("minute", flat=True)) == [now - timedelta(days=7)]
