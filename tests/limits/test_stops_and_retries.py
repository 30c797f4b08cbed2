"""Limits across a worker's graceful stop and across retries, with real workers: a worker
stopped by SIGTERM gives back the runs it claimed and had not started, and their slots,
so the other workers go on at once (not at the backstop, not when it exits); a limited
task that fails and retries after a backoff never passes its limit."""

from __future__ import annotations

import signal

import pytest

from taskmill.models import Run, RunStatus
from tests.conftest import wait_until
from tests.limits.ledger import greatest_overlap, started
from tests.limits.runs import all_done, ids, left, no_errors, wait_started
from tests.testapp.limit_tasks import two_failing_once, two_gated, unlimited

pytestmark = pytest.mark.django_db(transaction=True)

# The gate looks again at a key (or queue) that holds runs back at most this late: a stop
# whose slots came free only then would fail the waits below, which are shorter.
BEFORE_BACKSTOP = 20.0


@pytest.mark.parametrize("limit", ["key", "queue"])
def test_a_stopping_worker_gives_its_slots_back_at_once(start_worker, record_dir, tmp_path, limit):
    # Both limits hold two at once: the task's own, or its queue's (QUEUE_LIMITS, erp: 2),
    # which claims pass over while it is full.
    task = two_gated if limit == "key" else unlimited.using(queue_name="erp")
    gate = str(tmp_path / "gate")
    first = task.using(priority=5).enqueue(key="two", name="first", gate=gate)
    second = task.using(priority=5).enqueue(key="two", name="second", seconds=0.05)
    backlog = [task.enqueue(key="two", name=f"r{index}", seconds=0.05) for index in range(4)]
    # One slot and a prefetch of one: it claims both of the limit's slots, starts "first"
    # (which waits for the gate) and holds "second" waiting.
    stopping = start_worker(
        "--concurrency", "1", "--shutdown-timeout", "60", "--poll-interval", "0.2",
        "--no-scheduler",
    )  # fmt: skip
    wait_started(record_dir, "first.1", worker=stopping)
    wait_until(
        lambda: Run.objects.filter(pk=second.id, status=RunStatus.RUNNING).exists(),
        30,
        message=lambda: f"the second run claimed along with the first: {left()}",
    )
    other = start_worker("--concurrency", "2", "--poll-interval", "0.2", "--no-scheduler")
    other.wait_for_output("started:", timeout=60)
    assert started(record_dir) == ["first.1"]  # the limit is full: the other worker waits

    stopping.signal(signal.SIGTERM)
    rest = ids([second, *backlog])
    wait_until(
        lambda: Run.objects.filter(pk__in=rest, status=RunStatus.SUCCESSFUL).count() == len(rest),
        BEFORE_BACKSTOP,
        interval=0.1,
        message=lambda: f"the other worker to go on: {left()}\nstopping:\n{stopping.output}",
    )
    # ...while the stopping worker still finishes "first", in its grace period.
    assert stopping.process.poll() is None
    assert Run.objects.get(pk=first.id).status == RunStatus.RUNNING
    stopping.wait_for_output("Returned 1 unstarted run(s) to the queue")

    (tmp_path / "gate").write_text("go")
    assert stopping.wait(60) == 0, stopping.output
    all_done(30)
    assert greatest_overlap(record_dir) == {"two": 2}
    # Given back as if never claimed: one attempt, by the other worker only.
    run = Run.objects.get(pk=second.id)
    assert (run.attempt, run.errors, len(run.worker_ids)) == (1, [], 1)
    no_errors()


def test_retries_after_a_backoff_never_pass_the_limit(start_worker, record_dir):
    # Two at a time; each run fails its first attempt and goes again 0.2 s later.
    two_failing_once.enqueue_many(
        [((), {"key": "retry", "name": f"r{index}", "seconds": 0.1}) for index in range(10)]
    )
    for _ in range(3):
        start_worker("--concurrency", "3", "--poll-interval", "0.2", "--no-scheduler")
    all_done(60)
    assert greatest_overlap(record_dir) == {"retry": 2}
    assert sorted(started(record_dir)) == sorted(
        f"r{index}.{attempt}" for index in range(10) for attempt in (1, 2)
    )
    # Held back meanwhile, a run used no attempt: the failed one and the one that worked.
    for run in Run.objects.all():
        assert run.attempt == 2, (run.pk, run.attempt, run.errors)
        assert [error["exception_class_path"] for error in run.errors] == ["builtins.RuntimeError"]
