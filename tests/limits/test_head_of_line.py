"""No head-of-line blocking, with a real worker: runs a limit holds back, however many and
however high their priority, never keep runs of other keys, other tasks or other queues from
starting; and a queue at its limit is passed over by claims, not claimed and handed back in
a loop."""

from __future__ import annotations

import pytest

import taskmill
from taskmill.models import Run, RunStatus
from tests.conftest import wait_until
from tests.limits.ledger import greatest_overlap, started
from tests.limits.runs import (
    IDLE_SHARE,
    all_done,
    busy_share,
    holder,
    ids,
    left,
    no_errors,
    wait_held,
    wait_started,
)
from tests.testapp.limit_tasks import one_per_key, unlimited

pytestmark = pytest.mark.django_db(transaction=True)

# The gate looks again at a key that holds runs back at most 30 s later (its backstop): a
# wait shorter than that fails where only the backstop would have let a run go.
BEFORE_BACKSTOP = 20.0


def test_blocked_runs_never_hold_back_other_keys_tasks_or_queues(
    start_worker, record_dir, tmp_path
):
    gate = str(tmp_path / "gate")
    # The blocked: key A (limit 1) and the queue erp (limit 2, QUEUE_LIMITS in the test
    # settings) taken by runs waiting for the gate, and a backlog of each, ahead of
    # everything else by priority.
    first = one_per_key.using(priority=10)
    erp = unlimited.using(queue_name="erp", priority=10)
    blockers = [
        first.enqueue(key="A", name="a-blocker", gate=gate),
        erp.enqueue(key="erp", name="erp-blocker0", gate=gate),
        erp.enqueue(key="erp", name="erp-blocker1", gate=gate),
    ]
    worker = start_worker("--concurrency", "6", "--poll-interval", "0.2", "--no-scheduler")
    for name in ("a-blocker.1", "erp-blocker0.1", "erp-blocker1.1"):
        wait_started(record_dir, name, worker=worker)
    backlog_a = [first.enqueue(key="A", name=f"a{index}") for index in range(20)]
    backlog_erp = [erp.enqueue(key="erp", name=f"erp{index}") for index in range(10)]
    wait_held(ids(backlog_a), holder(one_per_key, "A"))

    # The others: another key of the same task, another task, another queue.
    others = [
        *(one_per_key.enqueue(key="B", name=f"b{index}") for index in range(5)),
        *(unlimited.enqueue(key="free", name=f"free{index}") for index in range(5)),
        *(unlimited.using(queue_name="low").enqueue(key="low", name=f"low{i}") for i in range(5)),
    ]
    wait_until(
        lambda: Run.objects.filter(pk__in=ids(others), status=RunStatus.SUCCESSFUL).count() == 15,
        60,
        interval=0.1,
        message=lambda: f"the other runs to finish past the blocked ones: {left()}",
    )
    # All while the blocked stayed blocked: the blockers still run, their backlogs wait.
    blocked = ids(blockers)
    assert Run.objects.filter(pk__in=blocked, status=RunStatus.RUNNING).count() == 3
    waiting = ids([*backlog_a, *backlog_erp])
    assert Run.objects.filter(pk__in=waiting, status=RunStatus.READY, attempt=0).count() == 30

    # The erp backlog is due (a full queue holds nothing back, claims pass it over): the
    # worker, three slots free, does not claim and hand it back again and again.
    def untouched() -> None:
        assert (
            Run.objects.filter(pk__in=waiting, status=RunStatus.READY, worker_ids=[]).count() == 30
        ), left()

    share = busy_share(worker.process.pid, 1.0, look=untouched)
    assert share < IDLE_SHARE, f"a worker with only blocked runs used {share:.0%} of a CPU"
    backlog = {f"a{i}.1" for i in range(20)} | {f"erp{i}.1" for i in range(10)}
    assert not backlog & set(started(record_dir))

    (tmp_path / "gate").write_text("go")
    all_done(60)
    overlap = greatest_overlap(record_dir)
    assert (overlap["A"], overlap["erp"], overlap["B"]) == (1, 2, 1), overlap
    no_errors()


def test_a_paused_queues_run_never_takes_the_slot_of_its_keys_runs_elsewhere(
    start_worker, record_dir, tmp_path
):
    gate = tmp_path / "gate"
    one_per_key.enqueue(key="K", name="blocker", gate=str(gate))
    worker = start_worker("--concurrency", "2", "--poll-interval", "0.2", "--no-scheduler")
    wait_started(record_dir, "blocker.1", worker=worker)
    # Ahead by priority, in a queue an operator paused: the slot the blocker frees must go
    # to the key's run that can start, not wait for the queue's resume.
    assert taskmill.pause_queue("low")
    paused = one_per_key.using(queue_name="low", priority=5).enqueue(key="K", name="paused")
    runnable = one_per_key.enqueue(key="K", name="runnable")
    wait_held(ids([paused, runnable]), holder(one_per_key, "K"))
    gate.write_text("go")
    wait_until(
        lambda: Run.objects.filter(pk=runnable.id, status=RunStatus.SUCCESSFUL).exists(),
        BEFORE_BACKSTOP,
        message=lambda: f"the runnable run to start past the paused one: {left()}",
    )
    assert started(record_dir) == ["blocker.1", "runnable.1"]
    assert Run.objects.filter(pk=paused.id, status=RunStatus.READY, attempt=0).exists()
