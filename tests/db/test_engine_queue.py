"""The contract's queue operations, through the engine directly: insert, claim,
any_claimable, finish, release, release_orphans, stage_due."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from taskmill.db import Engine
from taskmill.db.contract import Engine as Contract
from taskmill.db.records import Landed
from taskmill.models import Queue, Run
from tests.conftest import held_by_another_transaction

from .helpers import claim, insert, new_run, outcome

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_engine_fulfils_the_whole_contract(engine: Engine) -> None:
    assert isinstance(engine, Contract)
    assert not type(engine).__abstractmethods__
    for flag in ("pushes_wakeups", "skips_locked_rows", "searches_json_by_containment"):
        assert isinstance(getattr(engine, flag), bool), flag
    # The test settings are what taskmill asks for: the database checks find nothing.
    assert engine.check_database("here") == []


def test_insert_sets_ids_in_order_and_stores_the_runs(engine: Engine) -> None:
    later = timezone.now() + dt.timedelta(hours=1)
    runs = [
        new_run(args=[1], priority=3),
        new_run(queue_name="emails", kwargs={"to": "a"}),
        new_run(run_after=later, available_at=later, due=False),
        new_run(status="WAITING"),
    ]
    ids = insert(engine, *runs)
    assert all(isinstance(run_id, int) for run_id in ids) and ids == sorted(set(ids))
    stored = {row.pk: row for row in Run.objects.all()}
    assert set(stored) == set(ids)
    assert (stored[ids[0]].args, stored[ids[0]].priority) == ([1], 3)
    assert (stored[ids[1]].queue_name, stored[ids[1]].kwargs) == ("emails", {"to": "a"})
    assert (stored[ids[2]].due, stored[ids[2]].available_at) == (False, later)
    assert stored[ids[3]].status == "WAITING"
    for row in stored.values():
        assert (row.attempt, row.worker_id, row.worker_ids, row.errors) == (0, "", [], [])
    (lone,) = insert(engine, new_run(), wake={"default"})
    assert lone > ids[-1]


def test_insert_is_all_or_none_in_the_callers_transaction(engine: Engine) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        insert(engine, *[new_run(args=[i]) for i in range(3)], wake={"default"})
        raise RuntimeError("rolled back")
    assert not Run.objects.exists()


def test_a_claim_takes_the_best_runs_first_and_marks_them_held(engine: Engine) -> None:
    now = timezone.now()
    older = now - dt.timedelta(minutes=1)
    ids = insert(
        engine,
        new_run(now=now, priority=0, available_at=older),  # 0
        new_run(now=now, priority=5),  # 1
        new_run(now=now, priority=5, available_at=older),  # 2
        new_run(now=now, priority=-3),  # 3
        new_run(now=now, priority=5),  # 4: same priority and time as 1, later id
    )
    until = now + dt.timedelta(minutes=2)
    first = claim(engine, "w1", limit=2, now=now, lease_until=until)
    assert [run.id for run in first] == [ids[2], ids[1]]
    rest = claim(engine, "w2", limit=10, now=now)
    assert [run.id for run in rest] == [ids[4], ids[0], ids[3]]
    for run in first:
        assert (run.attempt, run.worker_ids, run.started_at) == (1, ["w1"], now)
        row = Run.objects.get(pk=run.id)
        assert (row.status, row.attempt, row.worker_id, row.worker_ids) == (
            "RUNNING",
            1,
            "w1",
            ["w1"],
        )
        assert row.lease_expires_at == until and row.started_at == now
    assert claim(engine, "w3") == []


def test_a_claim_honours_queues_exclusions_backends_and_pauses(engine: Engine) -> None:
    insert(
        engine,
        new_run(queue_name="default"),
        new_run(queue_name="emails"),
        new_run(queue_name="high"),
        new_run(queue_name="default", backend="reports"),
    )
    Queue.objects.create(name="high", paused=True)
    assert {r.queue_name for r in claim(engine, queues=["emails"])} == {"emails"}
    taken = claim(engine, exclude_queues=["default"])
    assert taken == []  # "high" is paused
    (other,) = claim(engine, backends=["reports"])
    assert other.backend == "reports"
    (plain,) = claim(engine, backends=["default"])
    assert (plain.backend, plain.queue_name) == ("default", "default")
    assert claim(engine) == []
    Queue.objects.filter(name="high").update(paused=False)
    assert [r.queue_name for r in claim(engine)] == ["high"]


def test_only_ready_staged_due_runs_are_claimed(engine: Engine) -> None:
    now = timezone.now()
    soon = now + dt.timedelta(seconds=30)
    (deferred,) = insert(engine, new_run(run_after=soon, available_at=soon, due=False))
    insert(engine, new_run(status="WAITING"))
    assert claim(engine, now=now) == []
    assert engine.stage_due(now) == 0
    # Staged but not yet available: still not claimed.
    assert claim(engine, now=soon + dt.timedelta(seconds=1)) == []
    assert engine.stage_due(soon + dt.timedelta(seconds=1)) == 1
    assert engine.stage_due(soon + dt.timedelta(seconds=1)) == 0
    assert claim(engine, now=now) == []  # due, but its time has not come at ``now``
    assert [r.id for r in claim(engine, now=soon + dt.timedelta(seconds=1))] == [deferred]


def test_any_claimable_answers_as_a_claim_would_locks_aside(engine: Engine) -> None:
    def any_claimable(now: dt.datetime | None = None, **filters) -> bool:
        return engine.any_claimable(
            now=now or timezone.now(), queues=filters.pop("queues", None), **filters
        )

    now = timezone.now()
    soon = now + dt.timedelta(seconds=30)
    insert(engine, new_run(run_after=soon, available_at=soon, due=False), new_run(status="WAITING"))
    assert not any_claimable()  # deferred, not staged; waiting
    (email,) = insert(engine, new_run(queue_name="emails"))
    assert any_claimable() and any_claimable(queues=["emails"])
    assert not any_claimable(queues=["default"]) and not any_claimable(exclude_queues=["emails"])
    assert not any_claimable(backends=["reports"])
    assert not any_claimable(now=now - dt.timedelta(seconds=1))  # its time not come then
    Queue.objects.create(name="emails", paused=True)
    assert not any_claimable()
    Queue.objects.filter(name="emails").update(paused=False)
    if engine.skips_locked_rows:
        lock = lambda: list(Run.objects.select_for_update().filter(pk=email))  # noqa: E731
        with held_by_another_transaction(lock):
            assert claim(engine) == []  # a claim passes the locked run over ...
            assert any_claimable()  # ... and the look sees it, without waiting
    assert [run.id for run in claim(engine)] == [email]
    assert not any_claimable()


def test_finish_lands_fenced_outcomes_and_says_what_it_wrote(engine: Engine) -> None:
    ids = insert(engine, *[new_run(args=[i]) for i in range(4)])
    runs = {run.id: run for run in claim(engine)}
    first, second, third, fourth = (runs[i] for i in ids)
    Run.objects.filter(pk=fourth.id).update(has_dependents=True)
    retry_at = timezone.now() + dt.timedelta(minutes=1)
    stale = outcome(second, "FAILED", attempt=second.attempt - 1)
    landed = engine.finish(
        [
            outcome(first, return_value={"n": 1}),
            stale,
            outcome(
                third,
                "READY",
                errors=[{"exception_class_path": "E", "traceback": "t"}],
                available_at=retry_at,
            ),
            outcome(fourth, "FAILED"),
        ]
    )
    assert landed == {
        first.id: Landed(first.id, 1, "SUCCESSFUL", False),
        third.id: Landed(third.id, 1, "READY", False),
        fourth.id: Landed(fourth.id, 1, "FAILED", True),
    }
    row = Run.objects.get(pk=first.id)
    assert (row.status, row.return_value, row.worker_id, row.lease_expires_at) == (
        "SUCCESSFUL",
        {"n": 1},
        "",
        None,
    )
    assert row.finished_at is not None
    retried = Run.objects.get(pk=third.id)
    assert (retried.status, retried.available_at, retried.due, retried.finished_at) == (
        "READY",
        retry_at,
        False,
        None,
    )
    assert len(retried.errors) == 1
    assert Run.objects.get(pk=second.id).status == "RUNNING"  # the stale attempt: fenced out
    # Finished rows are no longer RUNNING: a second outcome never lands.
    assert engine.finish([outcome(first, "FAILED")]) == {}
    assert Run.objects.get(pk=first.id).status == "SUCCESSFUL"
    assert engine.finish([]) == {}


def test_the_claim_reads_the_snooze_count_and_a_snooze_writes_the_next(engine: Engine) -> None:
    snoozing, retried = insert(engine, new_run(), new_run())
    Run.objects.filter(pk=snoozing).update(snoozes=4)
    Run.objects.filter(pk=retried).update(snoozes=2)
    runs = {run.id: run for run in claim(engine)}
    assert (runs[snoozing].snoozes, runs[retried].snoozes) == (4, 2)
    later = timezone.now() + dt.timedelta(minutes=1)
    error = {"exception_class_path": "E", "traceback": "t"}
    landed = engine.finish(
        [
            outcome(runs[snoozing], "READY", available_at=later, snoozes=5),
            # A retry carries no count: the run's stays as it is.
            outcome(runs[retried], "READY", available_at=later, errors=[error]),
        ]
    )
    assert {row.status for row in landed.values()} == {"READY"}
    rows = {row.pk: row for row in Run.objects.filter(pk__in=[snoozing, retried])}
    assert (rows[snoozing].snoozes, rows[retried].snoozes) == (5, 2)
    assert (rows[snoozing].errors, rows[snoozing].available_at, rows[snoozing].due) == (
        [],
        later,
        False,
    )
    # The next claim, once its time has come, sees the new count.
    assert engine.stage_due(later) == 2
    again = {run.id: run for run in claim(engine, now=later)}
    assert (again[snoozing].attempt, again[snoozing].snoozes) == (2, 5)
    assert (again[retried].attempt, again[retried].snoozes) == (2, 2)


def test_a_retry_of_a_run_asked_to_stop_lands_cancelled(engine: Engine) -> None:
    insert(engine, new_run())
    (run,) = claim(engine)
    Run.objects.filter(pk=run.id).update(stop_requested=True)
    retry_at = timezone.now() + dt.timedelta(minutes=1)
    landed = engine.finish([outcome(run, "READY", available_at=retry_at)])
    assert landed[run.id].status == "CANCELLED"
    row = Run.objects.get(pk=run.id)
    assert row.status == "CANCELLED" and row.finished_at is not None


def test_finish_commits_or_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    insert(engine, new_run(), new_run())
    runs = claim(engine)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert len(engine.finish([outcome(run) for run in runs])) == 2
        raise RuntimeError("rolled back")
    assert set(Run.objects.values_list("status", flat=True)) == {"RUNNING"}
    assert len(engine.finish([outcome(run) for run in runs])) == 2


def test_release_gives_back_held_runs_fenced(engine: Engine) -> None:
    insert(engine, new_run(), new_run(), new_run())
    unstarted, started, taken_over = claim(engine, "w")
    Run.objects.filter(pk=taken_over.id).update(status="READY")
    claim(engine, "other")  # takes it again: attempt 2
    now = timezone.now()
    assert engine.release([unstarted], now=now, started=False) == 1
    assert engine.release([started, taken_over], now=now, started=True) == 1
    row = Run.objects.get(pk=unstarted.id)
    assert (row.status, row.attempt, row.worker_ids, row.due) == ("READY", 0, [], True)
    assert row.started_at is None and row.available_at == now
    row = Run.objects.get(pk=started.id)
    assert (row.status, row.attempt, row.worker_ids, row.worker_id) == ("READY", 1, ["w"], "")
    assert Run.objects.get(pk=taken_over.id).worker_id == "other"
    assert engine.release([], now=now, started=True) == 0


def test_release_orphans_returns_what_a_lost_claim_reply_left(engine: Engine) -> None:
    insert(engine, new_run(), new_run(), new_run())
    kept, lost, _ = claim(engine, "w", limit=2) + claim(engine, "someone-else")
    now = timezone.now()
    assert engine.release_orphans("w", [kept.id], now=now) == 1
    row = Run.objects.get(pk=lost.id)
    assert (row.status, row.attempt, row.worker_ids, row.worker_id) == ("READY", 0, [], "")
    assert Run.objects.get(pk=kept.id).status == "RUNNING"
    assert Run.objects.filter(worker_id="someone-else", status="RUNNING").count() == 1
    assert engine.release_orphans("w", [], now=now) == 1  # nothing held: all of them go


def test_an_attempt_number_claimed_again_by_another_worker_fences_out_the_first(
    engine: Engine,
) -> None:
    # A run returned unstarted (rescued while prefetched, handed back by a limit's gate)
    # is claimed again under the same attempt number: the first holder, frozen meanwhile,
    # must write nothing, start nothing, release nothing.
    (run_id,) = insert(engine, new_run())
    (first,) = claim(engine, worker_id="a")
    assert engine.release([first], now=timezone.now(), started=False) == 1
    (second,) = claim(engine, worker_id="b")
    assert (first.attempt, second.attempt) == (1, 1)
    assert (first.holder, second.holder) == ("a", "b")

    assert engine.finish([outcome(first, "CANCELLED")], worker_id="a") == {}
    assert not engine.unmark_prefetched(run_id, 1, timezone.now(), worker_id="a")
    with transaction.atomic():
        assert not engine.lock_attempt(run_id, 1, "a")
    assert engine.release([first], now=timezone.now(), started=False) == 0
    row = Run.objects.get(pk=run_id)
    assert (row.status, row.worker_id, row.attempt) == ("RUNNING", "b", 1)

    # The holder's writes land.
    assert engine.unmark_prefetched(run_id, 1, timezone.now(), worker_id="b")
    with transaction.atomic():
        assert engine.lock_attempt(run_id, 1, "b")
    landed = engine.finish([outcome(second)], worker_id="b")
    assert landed == {run_id: Landed(run_id, 1, "SUCCESSFUL", False)}
