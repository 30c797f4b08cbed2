"""Real processes: the scheduler subcommand, the worker's scheduler thread and its flag."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskmill.models import Run, Schedule
from tests.conftest import kill_other_connections, wait_until
from tests.faults.db_faults import POOLED

from .conftest import make_schedule

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_the_scheduler_subcommand_syncs_code_schedules_and_fires_them(start_scheduler):
    scheduler = start_scheduler("--max-sleep", "0.5")
    scheduler.wait_for_output("Schedules declared in code synced: 1 created")
    declared = Schedule.objects.get(name="declared-every-second")
    assert declared.code_owned
    wait_until(lambda: Run.objects.filter(schedule=declared).count() >= 3, timeout=30)
    run = Run.objects.filter(schedule=declared).order_by("scheduled_for").first()
    assert run.kwargs == {"label": "declared", "fired_at": run.scheduled_for.isoformat()}
    scheduler.signal()
    assert scheduler.wait(30) == 0, scheduler.output
    assert "Scheduler stopped" in scheduler.output


def test_a_worker_fires_schedules_unless_told_not_to(start_worker, scheduler_env):
    schedule = make_schedule(
        timezone.now(),
        kind="interval",
        interval=timedelta(seconds=1),
        fire_time_kwarg="fired_at",
    )
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=timezone.now())

    # A burst worker without a scheduler: it runs, finds nothing to do, exits; nothing fired.
    quiet = start_worker("--burst", "--no-scheduler", env=scheduler_env)
    assert quiet.wait(60) == 0, quiet.output
    assert not Run.objects.exists()
    assert "Scheduler started" not in quiet.output
    schedule.refresh_from_db()
    assert schedule.fire_count == 0

    # A default worker runs a scheduler thread: the schedule fires and its runs are run.
    worker = start_worker(env=scheduler_env)
    wait_until(
        lambda: Run.objects.filter(schedule=schedule, status="SUCCESSFUL").count() >= 2,
        timeout=30,
        message=lambda: f"scheduled runs done; worker output:\n{worker.output}",
    )
    assert "Scheduler started" in worker.output
    done = Run.objects.filter(schedule=schedule, status="SUCCESSFUL").first()
    assert done.return_value == done.scheduled_for.isoformat()  # the task got its fire time
    worker.signal()
    assert worker.wait(30) == 0, worker.output


def test_the_scheduler_survives_a_lost_database_connection(start_scheduler):
    if POOLED:
        pytest.skip(
            "through a transaction pooler a server session lost between transactions is "
            "replaced by the pooler: the process never sees it (the fault suite's restarts "
            "and cuts run against PostgreSQL itself)"
        )
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection to lose")
    scheduler = start_scheduler("--max-sleep", "0.2")
    declared = wait_until(
        lambda: Schedule.objects.filter(name="declared-every-second").first(), timeout=30
    )
    wait_until(lambda: Run.objects.filter(schedule=declared).exists(), timeout=30)
    wait_until(kill_other_connections, timeout=10, message="the scheduler's connection")
    fired = Run.objects.filter(schedule=declared).count()
    wait_until(
        lambda: Run.objects.filter(schedule=declared).count() >= fired + 2,
        timeout=30,
        message=lambda: f"fires after the cut; output:\n{scheduler.output}",
    )
    assert "Scheduler database error" in scheduler.output  # it did lose it, and went on
    scheduler.signal()
    assert scheduler.wait(30) == 0, scheduler.output
