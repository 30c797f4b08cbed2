"""A run held back by a limit, with a real worker: READY to Django's API, no attempt used,
no error written; out of every claim while it cannot run (no storm of claims and give-backs
on an idle worker); let go in the transaction that frees its key's slot, the highest
priority first, then in the order enqueued."""

from __future__ import annotations

import pytest

from taskmill.compat import TaskResultStatus
from taskmill.models import Run, RunStatus
from tests.conftest import wait_until
from tests.limits.ledger import greatest_overlap, started
from tests.limits.runs import (
    IDLE_SHARE,
    all_done,
    busy_share,
    held,
    holder,
    ids,
    no_errors,
    wait_held,
    wait_started,
)
from tests.testapp.limit_tasks import one_per_key

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "P"


def test_a_held_run_waits_ready_without_cost_and_goes_first_by_priority(
    start_worker, record_dir, tmp_path
):
    gate = tmp_path / "gate"
    blocker = one_per_key.enqueue(key=KEY, name="blocker", gate=str(gate))
    worker = start_worker("--concurrency", "4", "--poll-interval", "0.2", "--no-scheduler")
    wait_started(record_dir, "blocker.1", worker=worker)
    # Enqueued while the key is full: claimed (they are due), then held back by the gate.
    low = [one_per_key.enqueue(key=KEY, name=f"low{index}") for index in range(4)]
    high = one_per_key.using(priority=5).enqueue(key=KEY, name="high")
    waiting = ids([*low, high])
    by = holder(one_per_key, KEY)
    wait_held(waiting, by)

    # Django's API sees a run waiting its turn: READY, never attempted, no error.
    for result in [*low, high]:
        seen = one_per_key.get_result(result.id)
        assert seen.status == TaskResultStatus.READY
        assert (seen.attempts, seen.errors, seen.worker_ids) == (0, [], [])

    # Not claimed again and again: the worker has three free slots and nothing it may
    # start, and stays idle while the runs stay held, untouched.
    def still_held() -> None:
        assert held(waiting, by) == len(waiting), Run.objects.filter(pk__in=waiting).values()

    share = busy_share(worker.process.pid, 1.5, look=still_held)
    assert share < IDLE_SHARE, f"an idle worker used {share:.0%} of a CPU"
    assert started(record_dir) == ["blocker.1"]

    # The blocker's outcome lets the best held run go in its own transaction: no statement
    # ever reads the blocker finished and that run still held back.
    gate.write_text("go")
    pair = [int(blocker.id), int(high.id)]

    def blocker_finished() -> bool:
        # One statement: the blocker's status and the hold as one commit left them.
        rows = Run.objects.filter(pk__in=pair).values_list("id", "status", "held_by")
        seen = {pk: (status, held_by) for pk, status, held_by in rows}
        if seen[pair[0]][0] == RunStatus.RUNNING:
            return False
        assert seen[pair[0]][0] == RunStatus.SUCCESSFUL, seen
        assert seen[pair[1]][1] is None, f"the blocker finished, the high run still held: {seen}"
        return True

    wait_until(blocker_finished, 30, message="the blocker to finish")
    all_done(60)
    assert started(record_dir) == ["blocker.1", "high.1", *(f"low{i}.1" for i in range(4))]
    assert greatest_overlap(record_dir) == {KEY: 1}
    no_errors()


def test_a_run_enqueued_later_never_takes_the_turn_of_a_held_one(
    start_worker, record_dir, tmp_path
):
    gate = tmp_path / "gate"
    one_per_key.using(priority=10).enqueue(key=KEY, name="blocker", gate=str(gate))
    high = one_per_key.using(priority=5).enqueue(key=KEY, name="high")
    # Two tasks in all: the worker claims both, the gate turns "high" away and holds it back.
    only_two = start_worker(
        "--concurrency", "2", "--max-tasks", "2", "--poll-interval", "0.2", "--no-scheduler"
    )
    wait_started(record_dir, "blocker.1", worker=only_two)
    wait_held(ids([high]), holder(one_per_key, KEY))
    # Enqueued after the key filled up, lower and later: due (held too if the worker met it
    # already) when the blocker's slot frees. The slot goes to "high" all the same, and the
    # worker's second task is "high".
    one_per_key.enqueue(key=KEY, name="late")
    gate.write_text("go")
    assert only_two.wait(60) == 0, only_two.output
    start_worker("--concurrency", "2", "--poll-interval", "0.2", "--no-scheduler")
    all_done(60)
    assert started(record_dir) == ["blocker.1", "high.1", "late.1"]
    no_errors()
