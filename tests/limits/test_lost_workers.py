"""Slots of workers that are lost, with real processes and real signals: a SIGKILLed
worker's slot is freed when its run is rescued, exactly then and once; a SIGSTOPped one's
fenced attempt holds its slot until the rescue, and its late outcome frees nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskmill
from taskmill.exceptions import WorkerLost, class_path
from taskmill.models import Run, RunStatus
from tests.conftest import FAST_LEASES, WorkerProcess, wait_until
from tests.limits.ledger import greatest_overlap, started
from tests.limits.runs import all_done, held, holder, ids, left, wait_held, wait_started
from tests.testapp.limit_tasks import one_per_key

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "K"
BY = holder(one_per_key, KEY)
RESCUER = ("--concurrency", "3", "--poll-interval", "0.2", "--no-scheduler")


def _rescued_with_no_start_meanwhile(
    record_dir: Path, run_id: int, timeout: float, next_id: int | None = None
) -> None:
    """Until the run's first attempt is rescued; meanwhile no other attempt of the key may
    begin (its slot is the lost attempt's until then). ``next_id``: the held run the rescue
    lets go, in its own transaction (no statement reads the run rescued and it held)."""
    pair = [run_id] if next_id is None else [run_id, next_id]

    def rescued() -> bool:
        names = started(record_dir)  # first: a start read here happened before the status
        rows = Run.objects.filter(pk__in=pair).values_list("id", "status", "attempt", "held_by")
        seen = {pk: (status, attempt, held_by) for pk, status, attempt, held_by in rows}
        if seen[run_id][:2] == (RunStatus.RUNNING, 1):
            assert len(names) == 1, f"started while the lost attempt held the slot: {names}"
            return False
        if next_id is not None:
            assert seen[next_id][2] is None, f"rescued, the next run still held: {seen}"
        return True

    wait_until(rescued, timeout, message=lambda: f"the rescue of run {run_id}: {left()}")


def _lost_once(run_id: int, name: str) -> None:
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.attempt, run.return_value) == (RunStatus.SUCCESSFUL, 2, f"{name}.2")
    assert [e["exception_class_path"] for e in run.errors] == [class_path(WorkerLost)]


def _rescuer(start_worker) -> WorkerProcess:
    # It looks for expired leases as often as the others, but keeps the long lease of its
    # own runs: a loaded machine cannot make it lose the runs it takes over.
    rescuer = start_worker(
        *RESCUER, env={"TASKMILL_TEST_RESCUE": FAST_LEASES["TASKMILL_TEST_RESCUE"]}
    )
    rescuer.wait_for_output("started:", timeout=60)
    return rescuer


@pytest.mark.parametrize("operator_cancels", [False, True], ids=["retried", "cancelled"])
def test_a_killed_workers_slot_frees_when_its_run_is_rescued_and_once(
    start_worker, record_dir, tmp_path, operator_cancels
):
    never = str(tmp_path / "never")  # its first attempt waits until its worker dies
    lost = one_per_key.using(priority=5).enqueue(key=KEY, name="lost", gate=never)
    victim = start_worker("--concurrency", "1", "--no-scheduler", env=FAST_LEASES)
    wait_started(record_dir, "lost.1", worker=victim)
    backlog = [one_per_key.enqueue(key=KEY, name=f"r{index}", seconds=0.05) for index in range(4)]
    # A worker with free slots, up before the kill: were the slot free, it would start one.
    _rescuer(start_worker)
    wait_held(ids(backlog), BY)
    victim.kill()
    if operator_cancels:
        # Its worker is gone: the rescue ends it CANCELLED, and its slot goes to the backlog
        # (retried, the rescued run is due and takes the slot itself).
        assert taskmill.cancel(lost)
    after = ["r0.1"] if operator_cancels else ["lost.2"]
    next_id = int(backlog[0].id) if operator_cancels else None
    _rescued_with_no_start_meanwhile(record_dir, int(lost.id), 60, next_id)
    all_done_but = [int(lost.id)] if operator_cancels else []
    wait_until(
        lambda: (
            not Run.objects.exclude(pk__in=all_done_but)
            .exclude(status=RunStatus.SUCCESSFUL)
            .exists()
        ),
        60,
        message=lambda: str(left()),
    )
    # Then the backlog one at a time: a slot freed twice would have let two go together.
    names = started(record_dir)
    assert names == ["lost.1", *after, *(f"r{i}.1" for i in range(4) if f"r{i}.1" not in after)]
    assert greatest_overlap(record_dir, leave_out={"lost.1"}) == {KEY: 1}
    if operator_cancels:
        run = Run.objects.get(pk=lost.id)
        assert (run.status, run.attempt) == (RunStatus.CANCELLED, 1)
    else:
        _lost_once(int(lost.id), "lost")
    backlog_runs = Run.objects.filter(pk__in=ids(backlog))
    assert [(run.attempt, run.errors) for run in backlog_runs] == [(1, [])] * 4


def test_a_frozen_workers_attempt_holds_its_slot_and_its_late_end_frees_nothing(
    start_worker, record_dir, tmp_path
):
    first_gate, second_gate = tmp_path / "first", tmp_path / "second"
    stale = one_per_key.using(priority=5).enqueue(key=KEY, name="stale", gate=str(first_gate))
    frozen = start_worker("--concurrency", "1", "--no-scheduler", env=FAST_LEASES)
    wait_started(record_dir, "stale.1", worker=frozen)
    # After the rescued attempt, "holding" takes the slot and keeps it until its gate opens.
    holding = one_per_key.using(priority=4).enqueue(key=KEY, name="holding", gate=str(second_gate))
    later = ids(one_per_key.enqueue(key=KEY, name=f"r{index}") for index in range(3))
    rescuer = _rescuer(start_worker)
    wait_held([int(holding.id), *later], BY)
    frozen.freeze()
    try:
        _rescued_with_no_start_meanwhile(record_dir, int(stale.id), timeout=60)
        wait_started(record_dir, "holding.1", worker=rescuer)
    finally:
        first_gate.write_text("go")
        frozen.thaw()
    # The stale attempt ends now, while "holding" has the slot: its outcome is refused
    # (fenced), and frees nothing, in the transaction that refused it.
    frozen.wait_for_output("discarded", timeout=60)
    assert Run.objects.get(pk=holding.id).status == RunStatus.RUNNING
    assert held(later, BY) == len(later), left()
    second_gate.write_text("go")
    all_done(60)
    assert started(record_dir)[:3] == ["stale.1", "stale.2", "holding.1"]
    assert sorted(started(record_dir)[3:]) == ["r0.1", "r1.1", "r2.1"]
    assert greatest_overlap(record_dir, leave_out={"stale.1"}) == {KEY: 1}
    _lost_once(int(stale.id), "stale")
