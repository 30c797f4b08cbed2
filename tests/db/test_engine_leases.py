"""The contract's lease operations, through the engine directly: heartbeat,
unmark_prefetched, lock_attempt, expired_runs and rescue."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from taskmill.db import Engine, get_engine
from taskmill.models import Run, Worker
from tests.conftest import held_by_another_transaction

from .helpers import claim, insert, new_run

pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(worker_id: str) -> Worker:
    now = timezone.now()
    return Worker.objects.create(
        id=worker_id, host="h", pid=1, started_at=now, last_heartbeat_at=now, state="running"
    )


def beat(engine: Engine, held, **fields):
    now = timezone.now()
    values = {
        "worker_id": "w",
        "held": held,
        "waiting": set(),
        "skip": set(),
        "now": now,
        "lease_until": now + dt.timedelta(minutes=10),
        "worker_fields": {},
    }
    values.update(fields)
    return engine.heartbeat(**values)


def test_a_heartbeat_renews_ours_and_reports_the_rest(engine: Engine) -> None:
    make_worker("w")
    insert(engine, *[new_run() for _ in range(5)])
    mine = claim(engine, "w", lease_until=timezone.now() + dt.timedelta(seconds=30))
    renewed, waiting, rescued, stopped, skipped = mine
    Run.objects.filter(pk=rescued.id).update(status="READY")
    Run.objects.filter(pk=stopped.id).update(stop_requested=True)
    Run.objects.filter(pk=renewed.id).update(prefetched=True)  # a mark that no longer holds
    until = timezone.now() + dt.timedelta(minutes=10)
    reply = beat(
        engine,
        {run.id: run.attempt for run in mine},
        waiting={waiting.id},
        skip={skipped.id},
        lease_until=until,
        worker_fields={"processed": 7},
    )
    assert reply.renewed == {renewed.id, waiting.id, stopped.id}
    assert reply.lost == {rescued.id}
    assert reply.stop_requested == {stopped.id}
    assert reply.shutdown_requested is False
    rows = {row.pk: row for row in Run.objects.all()}
    for run in (renewed, waiting, stopped):
        assert rows[run.id].lease_expires_at == until
    assert rows[skipped.id].lease_expires_at < until  # its own transaction holds it
    assert rows[waiting.id].prefetched is True and rows[renewed.id].prefetched is False
    worker = Worker.objects.get(pk="w")
    assert worker.processed == 7 and worker.last_heartbeat_at > worker.started_at
    # A stale attempt is lost too, and the worker hears of its shutdown.
    Worker.objects.filter(pk="w").update(shutdown_requested=True)
    reply = beat(engine, {renewed.id: renewed.attempt + 1})
    assert (reply.renewed, reply.lost, reply.shutdown_requested) == (set(), {renewed.id}, True)


def test_a_heartbeat_for_an_unknown_worker_renews_its_runs_only(engine: Engine) -> None:
    insert(engine, new_run())
    (run,) = claim(engine, "w")
    reply = beat(engine, {run.id: run.attempt})
    assert reply.renewed == {run.id} and reply.shutdown_requested is False


def test_unmark_prefetched_only_for_the_attempt_still_running(engine: Engine) -> None:
    insert(engine, new_run())
    (run,) = claim(engine, "w")
    Run.objects.filter(pk=run.id).update(prefetched=True)
    start = timezone.now()
    assert engine.unmark_prefetched(run.id, run.attempt, start) is True
    row = Run.objects.get(pk=run.id)
    assert (row.prefetched, row.started_at, row.last_attempted_at) == (False, start, start)
    assert engine.unmark_prefetched(run.id, run.attempt + 1, start) is False
    Run.objects.filter(pk=run.id).update(status="READY")
    assert engine.unmark_prefetched(run.id, run.attempt, start) is False


def test_expired_runs_are_found_and_rescued_once(engine: Engine) -> None:
    insert(engine, new_run(), new_run(), new_run())
    now = timezone.now()
    expired = claim(engine, "dead", limit=2, lease_until=now - dt.timedelta(seconds=5))
    (alive,) = claim(engine, "alive", lease_until=now + dt.timedelta(minutes=5))
    with transaction.atomic():
        found = engine.expired_runs(now, 10)
    assert [row["id"] for row in found] == [run.id for run in expired]
    row = found[0]
    assert (row["attempt"], row["worker_id"], row["worker_ids"]) == (1, "dead", ["dead"])
    assert (row["prefetched"], row["stop_requested"], row["has_dependents"]) == (
        False,
        False,
        False,
    )
    assert row["errors"] == [] and row["options"] is None
    with transaction.atomic():
        assert len(engine.expired_runs(now, 1)) == 1
    values = {"status": "READY", "worker_id": "", "lease_expires_at": None, "available_at": now}
    first = expired[0]
    assert engine.rescue(first.id, first.attempt, now, values) is True
    assert engine.rescue(first.id, first.attempt, now, values) is False  # no longer RUNNING
    assert engine.rescue(alive.id, alive.attempt, now, values) is False  # its lease holds
    second = expired[1]
    assert engine.rescue(second.id, second.attempt + 1, now, values) is False  # stale
    assert Run.objects.get(pk=first.id).status == "READY"
    assert set(Run.objects.filter(status="RUNNING").values_list("pk", flat=True)) == {
        alive.id,
        second.id,
    }


def test_lock_attempt_holds_the_current_attempt_only(engine: Engine) -> None:
    insert(engine, new_run())
    (run,) = claim(engine, "w", lease_until=timezone.now() - dt.timedelta(seconds=5))
    with transaction.atomic():
        assert engine.lock_attempt(run.id, run.attempt + 1) is False
        assert engine.lock_attempt(run.id, run.attempt) is True
    Run.objects.filter(pk=run.id).update(status="SUCCESSFUL")
    with transaction.atomic():
        assert engine.lock_attempt(run.id, run.attempt) is False


def test_a_locked_attempt_is_passed_over_by_the_rescue(engine: Engine) -> None:
    if not engine.skips_locked_rows:
        pytest.skip("SQLite: the atomic task's write transaction holds the whole database")
    insert(engine, new_run())
    (run,) = claim(engine, "w", lease_until=timezone.now() - dt.timedelta(seconds=5))

    def atomic_task() -> None:
        assert get_engine("default").lock_attempt(run.id, run.attempt)

    with held_by_another_transaction(atomic_task), transaction.atomic():
        assert engine.expired_runs(timezone.now(), 10) == []
    with transaction.atomic():
        assert [row["id"] for row in engine.expired_runs(timezone.now(), 10)] == [run.id]
