"""taskmill.overview and taskmill.health: the numbers an operator reads, from active rows only."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from taskmill.db import get_engine
from taskmill.health import check_health
from taskmill.models import Queue, Run, Schedule, Worker
from taskmill.overview import (
    as_json,
    late_schedules,
    orphaned_runs,
    queue_overview,
    worker_overview,
)
from tests.testapp import scheduled_tasks, tasks

pytestmark = pytest.mark.django_db


def make_run(queue: str = "default", status: str = "READY", **fields: object) -> int:
    """A run enqueued for real, then set to the state a worker or the stager would leave."""
    run_id = int(tasks.noop.using(queue_name=queue).enqueue().id)
    fields["status"] = status
    if status in ("SUCCESSFUL", "FAILED", "CANCELLED"):
        fields.setdefault("finished_at", timezone.now())
    Run.objects.filter(pk=run_id).update(**fields)
    return run_id


def make_worker(name: str, heartbeat: datetime, state: str = "running", **fields) -> Worker:
    return Worker.objects.create(
        id=name,
        host="host",
        pid=100,
        started_at=heartbeat,
        last_heartbeat_at=heartbeat,
        state=state,
        **fields,
    )


def make_schedule(
    name: str, next_fire_at: datetime | None, enabled: bool = True, **state: object
) -> Schedule:
    schedule = Schedule.objects.create(
        name=name,
        task_path=f"{scheduled_tasks.__name__}.heartbeat",
        kind="interval",
        interval=timedelta(minutes=5),
        timezone="UTC",
        enabled=enabled,
    )
    # The scheduler's state, as a scheduler that fell behind would have left it.
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=next_fire_at, **state)
    return schedule


def by_name(entries: list) -> dict:
    return {entry.name: entry for entry in entries}


def test_queues_count_each_active_state_and_never_finished_runs():
    now = timezone.now()
    make_run("default", available_at=now - timedelta(seconds=90))  # due, oldest
    make_run("default")  # due now
    # Deferred, its time come but not staged yet (no worker up): ready all the same.
    make_run("default", due=False, available_at=now - timedelta(seconds=30))
    make_run("default", due=False, available_at=now + timedelta(hours=1))  # deferred
    # Due in the index but retried with a backoff: not available yet.
    make_run("default", available_at=now + timedelta(minutes=5))
    make_run("default", "WAITING")
    make_run("default", "RUNNING", worker_id="w1")
    for status in ("SUCCESSFUL", "FAILED", "CANCELLED"):
        make_run("default", status)
        make_run("low", status)  # a queue with finished runs only: zeros
    make_run("high", "RUNNING", worker_id="w1")
    Queue.objects.create(name="emails", paused=True, paused_at=now)  # no runs at all

    queues = by_name(queue_overview())
    # Every queue the backends of this database configure (tests/settings.py), idle or not.
    assert sorted(queues) == ["default", "emails", "erp", "high", "low", "reports"]
    idle = queues["low"]
    assert (idle.ready, idle.scheduled, idle.waiting, idle.running) == (0, 0, 0, 0)
    assert idle.oldest_ready_age is None and not idle.paused
    default = queues["default"]
    assert (default.ready, default.scheduled, default.waiting, default.running) == (3, 2, 1, 1)
    assert 89 <= default.oldest_ready_age < 200
    assert not default.paused and default.paused_at is None
    high = queues["high"]
    assert (high.ready, high.scheduled, high.running, high.oldest_ready_age) == (0, 0, 1, None)
    emails = queues["emails"]
    assert emails.paused and emails.paused_at is not None
    assert (emails.ready, emails.running, emails.oldest_ready_age) == (0, 0, None)


def test_run_queries_spell_an_active_index_condition():
    """Each statement on the runs table names an active status, in the exact terms of an
    index (SQLite uses a partial index only then): finished rows are never read."""
    engine = get_engine("default")
    conditions = [
        engine.due_condition,
        engine.staging_condition,
        engine.running_condition,
        engine.waiting_condition,
        engine.held_condition,
    ]
    with CaptureQueriesContext(connection) as captured:
        queue_overview()
        worker_overview()
        orphaned_runs()
    on_runs = [query["sql"] for query in captured if "taskmill_run" in query["sql"]]
    assert len(on_runs) == 7
    for sql in on_runs:
        assert any(f"WHERE {condition} " in sql for condition in conditions), sql


@pytest.mark.skipif(connection.vendor == "mysql", reason="plans of tiny tables prove nothing")
def test_run_queries_are_answered_from_the_active_indexes():
    make_run("default")
    make_run("default", "SUCCESSFUL")
    with CaptureQueriesContext(connection) as captured:
        queue_overview()
        worker_overview()
        orphaned_runs()
    statements = [q["sql"] for q in captured if "taskmill_run" in q["sql"]]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Forbid the sequential scan: a plan that still needs one has no usable index.
            cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in statements:
            if connection.vendor == "postgresql":
                cursor.execute(f"EXPLAIN {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Seq Scan on taskmill_run" not in plan, plan
            else:
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
                plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
                assert "USING INDEX taskmill_run_" in plan or "USING COVERING INDEX" in plan, (
                    sql,
                    plan,
                )


def test_workers_not_stopped_with_their_heartbeat_age_liveness_and_load(settings):
    settings.TASKMILL_LEASE = 60.0
    now = timezone.now()
    make_worker("live", now - timedelta(seconds=5), concurrency=4, queues=["emails"])
    make_worker("silent", now - timedelta(seconds=120))
    make_worker("stopping", now, state="stopping")
    make_worker("stopped", now, state="stopped")
    make_run("emails", "RUNNING", worker_id="live")
    make_run("default", "RUNNING", worker_id="live")
    make_run("default", "SUCCESSFUL", worker_id="live")  # done: no load

    workers = {worker.id: worker for worker in worker_overview()}
    assert sorted(workers) == ["live", "silent", "stopping"]
    live = workers["live"]
    assert live.alive and 4 <= live.heartbeat_age < 60
    assert (live.running, live.concurrency, live.queues) == (2, 4, ["emails"])
    assert not workers["silent"].alive and workers["silent"].heartbeat_age >= 120
    assert workers["stopping"].alive and workers["stopping"].running == 0


def test_late_schedules_are_enabled_ones_past_the_grace():
    now = timezone.now()
    make_schedule("an hour late", now - timedelta(hours=1))
    make_schedule(
        "held back",
        now - timedelta(minutes=10),
        blocked_until=now + timedelta(minutes=1),
        last_error="boom",
    )
    make_schedule("within the grace", now - timedelta(seconds=30))
    make_schedule("disabled", now - timedelta(hours=1), enabled=False)
    make_schedule("on time", now + timedelta(minutes=1))
    make_schedule("finished", None)

    late = late_schedules(grace=60)
    assert [schedule.name for schedule in late] == ["an hour late", "held back"]
    assert 3600 <= late[0].lateness < 3700
    assert late[0].task_path.endswith(".heartbeat") and late[0].waiting_until is None
    assert late[1].waiting_until is not None and late[1].last_error == "boom"
    assert [s.name for s in late_schedules(grace=0)][-1] == "within the grace"


def test_orphaned_runs_are_running_runs_whose_lease_ran_out():
    now = timezone.now()
    expired = [
        make_run("default", "RUNNING", worker_id="gone", attempt=2, lease_expires_at=now - ago)
        for ago in (timedelta(seconds=40), timedelta(seconds=10))
    ]
    make_run("default", "RUNNING", worker_id="live", lease_expires_at=now + timedelta(minutes=1))
    make_run("default", "SUCCESSFUL", lease_expires_at=now - timedelta(minutes=1))

    orphans = orphaned_runs()
    assert [run.id for run in orphans] == expired  # the longest expired first
    assert (orphans[0].worker_id, orphans[0].attempt, orphans[0].task_path) == (
        "gone",
        2,
        "tests.testapp.tasks.noop",
    )
    assert 40 <= orphans[0].expired_for < 100
    assert [run.id for run in orphaned_runs(limit=1)] == expired[:1]


def test_as_json_writes_times_in_iso_8601():
    make_run("default", "RUNNING", worker_id="w", lease_expires_at=timezone.now())
    document = as_json({"orphans": orphaned_runs()})
    orphan = document["orphans"][0]
    assert datetime.fromisoformat(orphan["lease_expires_at"]).tzinfo is not None
    assert set(orphan) == {
        "id",
        "task_path",
        "queue_name",
        "worker_id",
        "attempt",
        "lease_expires_at",
        "expired_for",
    }


def test_health_names_each_problem_and_excepts_paused_queues(settings):
    settings.TASKMILL_LEASE = 60.0
    now = timezone.now()
    make_run("default", available_at=now - timedelta(minutes=10))
    make_run("emails", available_at=now - timedelta(hours=1))
    Queue.objects.create(name="emails", paused=True, paused_at=now)
    make_schedule("nightly", now - timedelta(hours=2))

    health = check_health(max_ready_age=300, schedule_grace=60)
    assert not health.ok
    assert len(health.problems) == 3, health.problems
    assert health.problems[0].startswith("no worker is alive")
    assert "queue 'default': 1 ready, the oldest waiting 6" in health.problems[1]
    assert "schedule 'nightly' is 7," in health.problems[2]
    (note,) = health.notes
    assert note.startswith("queue 'emails': 1 ready") and note.endswith("(paused, not counted)")

    # A schedule the scheduler holds back says why.
    Schedule.objects.filter(name="nightly").update(
        blocked_until=now + timedelta(seconds=30), last_error="Task raised\nTraceback..."
    )
    assert check_health().problems[2].endswith(": Task raised)")

    make_worker("live", timezone.now())
    Schedule.objects.update(enabled=False)
    assert check_health(max_ready_age=3600, schedule_grace=60).ok
