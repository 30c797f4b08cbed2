"""The claim / finish / release protocol, straight against each database engine."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from django.db import connection, connections
from django.utils import timezone

from taskmill.db import Outcome, get_engine
from taskmill.models import Run
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = dt.timedelta(minutes=5)


def claim(worker_id: str, limit: int, **filters):
    now = timezone.now()
    return get_engine(connection.alias).claim(
        worker_id=worker_id,
        limit=limit,
        now=now,
        lease_until=now + LEASE,
        queues=filters.get("queues"),
        exclude_queues=filters.get("exclude_queues", ()),
    )


def test_a_claim_marks_runs_as_held_by_the_worker():
    enqueued = tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
    claimed = claim("w1", 10)
    assert [run.id for run in claimed] == [int(result.id) for result in enqueued]
    for run in claimed:
        assert run.attempt == 1 and run.worker_ids == ["w1"]
        assert run.started_at is not None and run.last_attempted_at == run.started_at
        stored = Run.objects.get(pk=run.id)
        assert (stored.status, stored.attempt, stored.worker_id) == ("RUNNING", 1, "w1")
        assert stored.worker_ids == ["w1"] and stored.lease_expires_at > timezone.now()
        assert stored.args == run.args
    assert claim("w2", 10) == []


def test_claim_respects_the_limit_and_queue_filters():
    tasks.noop.enqueue_many([((), {})] * 5)
    tasks.send_email.enqueue_many([(("a",), {})] * 2)
    assert len(claim("w", 3, queues=["default"])) == 3
    assert {run.queue_name for run in claim("w", 10, exclude_queues=["default"])} == {"emails"}
    assert len(claim("w", 10)) == 2
    assert claim("w", 10) == []


def test_concurrent_claimers_never_share_a_run():
    total = 600
    tasks.noop.enqueue_many([((), {})] * total)
    taken: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        try:
            while True:
                batch = claim(name, 7)
                if not batch:
                    return
                with lock:
                    taken.extend(run.id for run in batch)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    counts = Counter(taken)
    assert len(counts) == total and set(counts.values()) == {1}
    assert Run.objects.filter(status="RUNNING", attempt=1).count() == total


def finished(run, status="SUCCESSFUL", value=None, attempt=None) -> Outcome:
    return Outcome(
        run_id=run.id,
        attempt=run.attempt if attempt is None else attempt,
        status=status,
        finished_at=timezone.now(),
        return_value=value,
        errors=[],
    )


def test_finish_writes_outcomes_in_one_batch():
    tasks.add.enqueue_many([((i, 1), {}) for i in range(4)])
    claimed = claim("w", 10)
    landed = get_engine(connection.alias).finish(
        [finished(run, value={"n": run.args[0]}) for run in claimed]
    )
    assert set(landed) == {run.id for run in claimed}
    for run in claimed:
        stored = Run.objects.get(pk=run.id)
        assert stored.status == "SUCCESSFUL"
        assert stored.return_value == {"n": run.args[0]}
        assert stored.worker_id == "" and stored.lease_expires_at is None
        assert stored.finished_at is not None


def test_a_stale_attempt_cannot_overwrite_the_outcome_fencing():
    tasks.add.enqueue(1, 2)
    (old,) = claim("presumed-dead", 1)
    # The run is rescued and taken again (attempt 2) while the first worker is away.
    Run.objects.filter(pk=old.id).update(status="READY")
    (new,) = claim("rescuer", 1)
    assert new.attempt == 2 and new.worker_ids == ["presumed-dead", "rescuer"]
    engine = get_engine(connection.alias)
    # The first worker wakes up and reports: its write must not land.
    assert engine.finish([finished(old, status="FAILED")]) == {}
    stored = Run.objects.get(pk=new.id)
    assert (stored.status, stored.worker_id) == ("RUNNING", "rescuer")
    assert set(engine.finish([finished(new, value=3)])) == {new.id}
    assert Run.objects.get(pk=new.id).return_value == 3
    # And once finished, nobody can finish it again.
    assert engine.finish([finished(new, status="FAILED")]) == {}
    assert Run.objects.get(pk=new.id).status == "SUCCESSFUL"


def test_release_of_unstarted_runs_undoes_the_claim():
    tasks.noop.enqueue_many([((), {})] * 2)
    claimed = claim("w", 2)
    released = get_engine(connection.alias).release(claimed, now=timezone.now(), started=False)
    assert released == 2
    for run in Run.objects.all():
        assert (run.status, run.attempt, run.worker_ids, run.worker_id) == ("READY", 0, [], "")
        assert run.started_at is None and run.last_attempted_at is None
    assert len(claim("w2", 5)) == 2


def test_release_of_started_runs_keeps_the_attempt():
    tasks.noop.enqueue()
    claimed = claim("w", 1)
    assert get_engine(connection.alias).release(claimed, now=timezone.now(), started=True) == 1
    run = Run.objects.get()
    assert (run.status, run.attempt, run.worker_ids) == ("READY", 1, ["w"])
    (again,) = claim("w2", 1)
    assert again.attempt == 2


def test_release_skips_runs_taken_over_meanwhile():
    tasks.noop.enqueue()
    (old,) = claim("w", 1)
    Run.objects.filter(pk=old.id).update(status="READY")
    claim("w2", 1)
    assert get_engine(connection.alias).release([old], now=timezone.now(), started=True) == 0
    assert Run.objects.get().worker_id == "w2"


def _explain(sql: str, params: list | tuple | None = None) -> str:
    """The database's plan for ``sql`` (by default with one %s: now), as text."""
    vendor = connection.vendor
    prefix = {"postgresql": "EXPLAIN ", "mysql": "EXPLAIN ", "sqlite": "EXPLAIN QUERY PLAN "}
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("ANALYZE taskmill_run")
        elif vendor == "mysql":
            cursor.execute("ANALYZE TABLE taskmill_run")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")
        if params is None:
            params = [connection.ops.adapt_datetimefield_value(timezone.now())]
        cursor.execute(prefix[vendor] + sql, params)
        return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())


def _insert_runs(count: int, *, status: str, due: bool, available_at: dt.datetime) -> None:
    """Insert ``count`` runs inside the database: far faster than from Python."""
    digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
    # Five digit tables cross-joined count 0..99,999 on every engine (MySQL 8 caps
    # recursive CTEs at 1,000 rows by default, so no WITH RECURSIVE).
    numbers = " CROSS JOIN ".join(f"({digits}) AS {name}" for name in "abcde")
    number = "a.d + 10 * b.d + 100 * c.d + 1000 * d.d + 10000 * e.d"
    adapt = connection.ops.adapt_datetimefield_value
    now, available = adapt(timezone.now()), adapt(available_at)
    finished = now if status == "SUCCESSFUL" else None
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO taskmill_run (task_path, backend, queue_name, priority, status, args, "
            "kwargs, enqueued_at, available_at, due, finished_at, attempt, worker_id, "
            "worker_ids, errors) "
            "SELECT 'tests.testapp.tasks.noop', 'default', 'default', 0, %s, '[]', "
            "'{}', %s, %s, %s, %s, 1, '', '[]', '[]' "
            f"FROM {numbers} WHERE {number} < %s",
            [status, now, available, due, finished, count],
        )


def test_claim_and_staging_use_their_indexes_with_many_finished_and_deferred_runs():
    _insert_runs(20_000, status="SUCCESSFUL", due=True, available_at=timezone.now())
    later = timezone.now() + dt.timedelta(days=30)
    _insert_runs(20_000, status="READY", due=False, available_at=later)
    tasks.noop.enqueue_many([((), {})] * 20)
    engine = get_engine(connection.alias)
    # The engines' own conditions, as the claim and the staging UPDATE use them.
    claim_plan = _explain(
        f"SELECT id FROM taskmill_run WHERE {engine.due_condition} AND available_at <= %s "
        "ORDER BY priority DESC, available_at, id LIMIT 10"
    )
    assert "taskmill_run_claim" in claim_plan, claim_plan
    stage_plan = _explain(
        f"SELECT id FROM taskmill_run WHERE {engine.staging_condition} AND available_at <= %s"
    )
    assert "taskmill_run_staging" in stage_plan, stage_plan
    # And the claim takes the 20 ready runs, none of the 20,000 deferred ones.
    assert len(claim("w", 100)) == 20


def test_deferred_runs_are_claimed_only_once_staged():
    engine = get_engine(connection.alias)
    soon = timezone.now() + dt.timedelta(seconds=30)
    result = tasks.noop.using(run_after=soon).enqueue()
    run = Run.objects.get(pk=int(result.id))
    assert (run.status, run.due, run.available_at) == ("READY", False, soon)
    assert engine.stage_due(timezone.now()) == 0
    assert claim("w", 10) == []
    # Time passes (simulated): staging marks it due, then a claim takes it.
    assert engine.stage_due(soon + dt.timedelta(seconds=1)) == 1
    assert Run.objects.get(pk=run.pk).due is True
    assert engine.stage_due(soon + dt.timedelta(seconds=1)) == 0
    now = soon + dt.timedelta(seconds=1)
    (claimed,) = engine.claim(
        worker_id="w", limit=10, now=now, lease_until=now + LEASE, queues=None
    )
    assert claimed.id == run.pk


def test_released_runs_are_due_at_once():
    tasks.noop.enqueue()
    claimed = claim("w", 1)
    Run.objects.filter(pk=claimed[0].id).update(due=False)  # as a future retry would leave it
    get_engine(connection.alias).release(claimed, now=timezone.now(), started=True)
    assert Run.objects.get().due is True


def test_a_heartbeats_not_started_mark_never_outlives_the_claim_it_was_about():
    # Found by the chaos soak (seed 560382930): a worker marked a claimed run "not started",
    # gave it back on SIGTERM with the mark still on it, and the next worker to claim it was
    # killed after starting it, before its first heartbeat cleared the mark: the rescue took
    # the started run for one never started, and it ran again with no lost attempt on record.
    tasks.noop.enqueue()
    (first,) = claim("w1", 1)
    Run.objects.filter(pk=first.id).update(prefetched=True)  # the heartbeat's mark
    engine = get_engine(connection.alias)
    assert engine.release([first], now=timezone.now(), started=False) == 1
    assert Run.objects.get().prefetched is False
    Run.objects.update(prefetched=True)  # a mark left by any other path
    claim("w2", 1)
    assert Run.objects.get().prefetched is False


def test_recording_the_start_of_a_run_taken_away_meanwhile_says_so():
    # Found by the chaos soak (seed 787799521): a frozen worker's marked run was rescued as
    # never started; thawed, its task thread recorded the start anyway (the write matched
    # nothing, silently) and ran it, and the run ran twice with no lost attempt on record.
    # The start record now says whether the run is still ours; the executor then drops it.
    tasks.noop.enqueue()
    (run,) = claim("w1", 1)
    engine = get_engine(connection.alias)
    Run.objects.filter(pk=run.id).update(prefetched=True)
    assert engine.unmark_prefetched(run.id, run.attempt, timezone.now()) is True
    Run.objects.filter(pk=run.id).update(prefetched=True, status="READY")  # rescued
    assert engine.unmark_prefetched(run.id, run.attempt, timezone.now()) is False
    (again,) = claim("w2", 1)
    assert (
        engine.unmark_prefetched(run.id, run.attempt, timezone.now()) is False
    )  # an older attempt
    assert engine.unmark_prefetched(again.id, again.attempt, timezone.now()) is True


def test_the_rescue_reads_running_runs_through_their_index():
    # Ordered by id, SQLite answered this every few seconds by scanning the whole table
    # (2.8 s at 300,000 finished runs): the order must not steer it off the running index.
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    engine = get_engine(connection.alias)
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        engine.expired_runs(timezone.now(), 100)
    [sql] = [q["sql"] for q in captured if "lease_expires_at <" in q["sql"]]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "USING INDEX taskmill_run_running" in plan, plan
        elif connection.vendor == "postgresql":
            with transaction.atomic():
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute(f"EXPLAIN {sql}")
                plan = " ".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on taskmill_run" not in plan, plan
        else:
            pytest.skip("MariaDB's plans on a near-empty table say nothing")
