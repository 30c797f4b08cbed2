"""Batches run by real worker processes: each callback enqueued exactly once, with the right
counts, however the members end (together on two workers, after a retry, after members they
added, before the block that enqueued them ends)."""

from __future__ import annotations

from collections import Counter

import pytest

import taskmill
from taskmill.models import Batch, Run, RunStatus, Worker
from tests.conftest import wait_until
from tests.testapp import batch_tasks, tasks

from .helpers import callback_records, callback_runs, nothing_active

pytestmark = pytest.mark.django_db(transaction=True)

CALLBACKS = {
    "on_finish": batch_tasks.on_finish,
    "on_success": batch_tasks.on_success,
    "on_failure": batch_tasks.on_failure,
}


def finished(batch: Batch, record_dir, kinds=("finish",)) -> bool:
    """The batch finished and its callbacks ``kinds`` have run (recorded what they saw)."""
    records = callback_records(record_dir, batch.pk)
    return all(records[kind] for kind in kinds)


def assert_fired_once(batch: Batch, record_dir, expected: dict[str, str]) -> None:
    """Each callback in ``expected`` ran once and saw these counts; the others never ran.
    Called once no run is active: a doubled callback would have been enqueued by then, in
    the transaction of a member's outcome."""
    wait_until(nothing_active, timeout=60, message="every run to end")
    records = callback_records(record_dir, batch.pk)
    runs = callback_runs(batch.pk)
    for kind in ("finish", "success", "failure"):
        if kind in expected:
            assert records[kind] == [expected[kind]], kind
            assert [run.status for run in runs[kind]] == [RunStatus.SUCCESSFUL], kind
        else:
            assert records[kind] == [] and runs[kind] == [], kind
    batch.refresh()
    ran = [runs[kind][0].pk for kind in ("finish", "success", "failure") if runs[kind]]
    assert batch.callback_runs == ran


def test_a_thousand_members_over_four_workers_fire_each_callback_once(start_worker, record_dir):
    # At most 300 runs each: the members are shared whatever the timing (a worker that
    # claims first would otherwise drain them alone where workers poll: CI's MariaDB leg).
    workers = [
        start_worker(
            "--no-scheduler", "--concurrency", "2", "--max-tasks", "300", "--label", f"w{i}"
        )
        for i in range(4)
    ]
    # All four claiming before the first member is enqueued: a worker up first would
    # otherwise drain them alone.
    wait_until(
        lambda: Worker.objects.filter(state=Worker.State.RUNNING).count() >= 4,
        60,
        message="four workers registered",
    )
    with taskmill.batch(**CALLBACKS, description="a thousand no-ops") as batch:
        # In chunks while the workers already run: members end before the block does.
        for start in range(0, 1000, 100):
            batch_tasks.member.enqueue_many([((i,), {}) for i in range(start, start + 100)])
        assert batch.finished_at is None
    assert batch.sealed and batch.total == 1000

    wait_until(lambda: finished(batch, record_dir, ("finish", "success")), timeout=240)
    counts = "total=1000 succeeded=1000 failed=0 cancelled=0 pending=0 finished=True"
    assert_fired_once(batch, record_dir, {"finish": counts, "success": counts})
    assert (batch.total, batch.succeeded, batch.failed, batch.cancelled) == (1000, 1000, 0, 0)
    assert batch.finished_at is not None and batch.pending == 0
    members = Run.objects.filter(batch_id=batch.pk)
    assert members.count() == members.filter(status=RunStatus.SUCCESSFUL, attempt=1).count()
    assert members.count() == 1000
    labels = Counter(w[0].split("@")[0] for w in members.values_list("worker_ids", flat=True))
    assert len(labels) == 4 and max(labels.values()) <= 300, labels
    for worker in workers:  # still running, or done with its 300
        assert worker.process.poll() in (None, 0), worker.output


def test_members_ending_together_on_two_workers_finish_the_batch_once(
    start_worker, record_dir, tmp_path
):
    # One worker per queue, so that each holds one member; callbacks go to "default".
    start_worker("--no-scheduler", "--queue", "high", "--queue", "default", "--label", "one")
    start_worker("--no-scheduler", "--queue", "low", "--label", "two")
    for round_number in range(3):
        gate = tmp_path / f"go-{round_number}"
        with taskmill.batch(**CALLBACKS) as batch:
            results = [
                batch_tasks.member_waiting_for.using(queue_name=queue).enqueue(str(gate), i)
                for i, queue in enumerate(("high", "low"))
            ]
        ids = [int(result.id) for result in results]

        def both_running(ids=ids) -> bool:
            rows = Run.objects.filter(pk__in=ids, status=RunStatus.RUNNING)
            return len({row.worker_id for row in rows}) == 2

        wait_until(both_running, message="a member running on each worker")
        gate.touch()  # both end now, each on its own worker
        wait_until(lambda batch=batch: finished(batch, record_dir, ("finish", "success")))
        counts = "total=2 succeeded=2 failed=0 cancelled=0 pending=0 finished=True"
        assert_fired_once(batch, record_dir, {"finish": counts, "success": counts})


def test_a_member_retried_then_successful_counts_as_a_success(start_worker, record_dir):
    start_worker("--no-scheduler", "--concurrency", "2")
    with taskmill.batch(**CALLBACKS) as batch:
        flaky = tasks.flaky.enqueue(2)  # fails attempts 1 and 2, succeeds on the third
        batch_tasks.member.enqueue(1)
    wait_until(lambda: finished(batch, record_dir, ("finish", "success")))
    counts = "total=2 succeeded=2 failed=0 cancelled=0 pending=0 finished=True"
    assert_fired_once(batch, record_dir, {"finish": counts, "success": counts})
    run = Run.objects.get(pk=int(flaky.id))
    assert run.status == RunStatus.SUCCESSFUL and run.attempt == 3 and len(run.errors) == 2


def test_failed_and_cancelled_members_fire_on_failure(start_worker, record_dir):
    with taskmill.batch(**CALLBACKS) as batch:
        failing = batch_tasks.fails.enqueue("for good")
        batch_tasks.member.using(depends_on=[failing]).enqueue(1)  # cancelled with it
        cancelled = batch_tasks.member.enqueue(2)
        batch_tasks.member.enqueue(3)
    assert taskmill.cancel(cancelled)  # before any worker: it never runs
    batch.refresh()
    assert (batch.cancelled, batch.pending) == (1, 3)
    start_worker("--no-scheduler")
    wait_until(lambda: finished(batch, record_dir, ("finish", "failure")))
    counts = "total=4 succeeded=1 failed=1 cancelled=2 pending=0 finished=True"
    assert_fired_once(batch, record_dir, {"finish": counts, "failure": counts})


def test_a_retried_member_is_pending_again_and_its_new_outcome_counts(
    start_worker, record_dir, tmp_path
):
    gate = tmp_path / "go"
    start_worker("--no-scheduler", "--concurrency", "2")
    with taskmill.batch(**CALLBACKS) as batch:
        first = tasks.flaky.using(max_attempts=1).enqueue(1)  # fails its one attempt
        batch_tasks.member_waiting_for.enqueue(str(gate))
    wait_until(lambda: Run.objects.get(pk=int(first.id)).status == RunStatus.FAILED)
    batch.refresh()
    assert (batch.failed, batch.pending, batch.finished_at) == (1, 1, None)

    assert taskmill.retry(first)  # its second attempt succeeds
    batch.refresh()
    # Pending again, unless the idle worker, woken by the retry, already ran it (CI saw that).
    assert (batch.failed, batch.pending + batch.succeeded, batch.succeeded) in {
        (0, 2, 0),
        (0, 2, 1),
    }
    wait_until(lambda: Run.objects.get(pk=int(first.id)).status == RunStatus.SUCCESSFUL)
    gate.touch()
    wait_until(lambda: finished(batch, record_dir, ("finish", "success")))
    counts = "total=2 succeeded=2 failed=0 cancelled=0 pending=0 finished=True"
    assert_fired_once(batch, record_dir, {"finish": counts, "success": counts})


def test_a_batch_whose_members_add_members_finishes_only_after_them(
    start_worker, record_dir, tmp_path
):
    gate = tmp_path / "go"
    start_worker("--no-scheduler", "--concurrency", "4")
    with taskmill.batch(**CALLBACKS) as batch:
        parent = batch_tasks.adds_members.enqueue(str(gate), 4)
    wait_until(lambda: Run.objects.get(pk=int(parent.id)).status == RunStatus.SUCCESSFUL)
    batch.refresh()
    # The parent ended; the four it added have not: the batch waits for them.
    assert (batch.total, batch.succeeded, batch.pending) == (5, 1, 4)
    assert batch.finished_at is None and batch.callback_runs == []
    assert callback_runs(batch.pk) == {"finish": [], "success": [], "failure": []}
    waiting = batch_tasks.member_waiting_for.module_path
    assert Run.objects.filter(batch_id=batch.pk, task_path=waiting).count() == 4

    gate.touch()
    wait_until(lambda: finished(batch, record_dir, ("finish", "success")))
    counts = "total=5 succeeded=5 failed=0 cancelled=0 pending=0 finished=True"
    assert_fired_once(batch, record_dir, {"finish": counts, "success": counts})


def test_members_that_end_before_the_block_does_finish_the_batch_at_the_seal(
    start_worker, record_dir
):
    start_worker("--no-scheduler", "--concurrency", "2")
    with taskmill.batch(**CALLBACKS) as batch:
        results = batch_tasks.member.enqueue_many([((i,), {}) for i in range(3)])
        ids = [int(result.id) for result in results]
        wait_until(lambda: Run.objects.filter(pk__in=ids, status=RunStatus.SUCCESSFUL).count() == 3)
        batch.refresh()
        # Every member ended, but the block may still enqueue: not finished.
        assert (batch.sealed, batch.succeeded, batch.finished_at) == (False, 3, None)
        assert callback_runs(batch.pk) == {"finish": [], "success": [], "failure": []}
    # The seal found nothing pending: it finished the batch itself.
    assert batch.sealed and batch.finished_at is not None and len(batch.callback_runs) == 2
    wait_until(lambda: finished(batch, record_dir, ("finish", "success")))
    counts = "total=3 succeeded=3 failed=0 cancelled=0 pending=0 finished=True"
    assert_fired_once(batch, record_dir, {"finish": counts, "success": counts})


def test_a_run_knows_its_batch(run_worker):
    with taskmill.batch() as batch:
        inside = batch_tasks.which_batch.enqueue()
    outside = batch_tasks.which_batch.enqueue()
    run_worker("--burst", "--no-scheduler")
    assert Run.objects.get(pk=int(inside.id)).return_value == batch.pk
    assert Run.objects.get(pk=int(outside.id)).return_value is None
