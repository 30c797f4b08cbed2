"""Skipped fires: ``max_instances`` and unique tasks. A skipped fire time is consumed, logged
once, counted in ``skip_count``, and is not a fire (``fire_count``, ``max_fires``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

import taskmill
from taskmill.admin.schedule_views import run_now
from taskmill.exceptions import InvalidSchedule
from taskmill.models import Run, RunStatus, Schedule
from taskmill.scheduler import firing
from taskmill.scheduler.declarations import sync_schedules
from tests.testapp.scheduled_tasks import heartbeat

from .conftest import TASK, fire_times, make_schedule

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
UNIQUE_TASK = "tests.testapp.tasks.unique_job"


@pytest.fixture
def tick(caplog, django_capture_on_commit_callbacks):
    """Tick at a simulated time, running what the commit would run (the skip lines)."""
    caplog.set_level(logging.INFO, logger="taskmill.scheduler")

    def tick(now: datetime) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return firing.tick(now=now).runs

    return tick


def skip_lines(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.INFO and "skipped its fire" in record.getMessage()
    ]


def over_limit(name: str, moment: datetime, limit: int) -> str:
    return (
        f"Schedule {name!r} skipped its fire at {moment.isoformat()}: {limit} of its runs "
        f"still pending or running (max_instances={limit})"
    )


def every_minute(**fields) -> Schedule:
    return make_schedule(NOW, kind="interval", interval=MINUTE, **fields)


def test_ready_waiting_and_running_runs_are_instances_finished_ones_are_not(tick, caplog):
    schedule = every_minute(name="slow", max_instances=1)
    times = [schedule.next_fire_at + k * MINUTE for k in range(6)]
    assert tick(times[0]) == 1
    run = Run.objects.get(schedule=schedule)
    unfinished = [RunStatus.READY, RunStatus.WAITING, RunStatus.RUNNING]
    for moment, status in zip(times[1:4], unfinished, strict=True):
        Run.objects.filter(pk=run.pk).update(status=status)
        assert tick(moment) == 0
        schedule.refresh_from_db()
        assert schedule.next_fire_at == moment + MINUTE  # the fire time is consumed
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCESSFUL)
    assert tick(times[4]) == 1

    assert fire_times(schedule) == [times[0], times[4]]
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count) == (2, 3)
    assert (schedule.last_fire_at, schedule.next_fire_at) == (times[4], times[5])
    assert skip_lines(caplog) == [over_limit("slow", moment, 1) for moment in times[1:4]]


def test_a_run_now_is_an_instance_too(tick, caplog):
    schedule = every_minute(name="manual", max_instances=1)
    run_now(schedule)
    assert tick(schedule.next_fire_at) == 0
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count) == (0, 1)
    assert Run.objects.filter(schedule=schedule).count() == 1


def test_a_catch_up_takes_its_fire_times_in_turn_and_its_own_runs_count(tick, caplog):
    schedule = every_minute(
        name="catching-up",
        max_instances=2,
        misfire_policy="catch_up",
        misfire_grace=timedelta(0),
    )
    first = schedule.next_fire_at
    assert tick(first) == 1
    # Five fire times missed at once: room for one more run, the oldest; four skipped.
    missed = [first + k * MINUTE for k in range(1, 6)]
    assert tick(missed[-1]) == 1

    assert fire_times(schedule) == [first, missed[0]]
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count) == (2, 4)
    assert schedule.next_fire_at == missed[-1] + MINUTE
    assert skip_lines(caplog) == [over_limit("catching-up", t, 2) for t in missed[1:]]


def test_skipped_fires_do_not_count_towards_max_fires(tick):
    schedule = every_minute(name="twice", max_instances=1, max_fires=2)
    times = [schedule.next_fire_at + k * MINUTE for k in range(4)]
    tick(times[0])
    tick(times[1])  # skipped: the schedule is not finished by it
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.next_fire_at) == (1, times[2])
    Run.objects.filter(schedule=schedule).update(status=RunStatus.SUCCESSFUL)
    tick(times[2])

    assert fire_times(schedule) == [times[0], times[2]]
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count) == (2, 1)
    assert schedule.next_fire_at is None
    assert schedule.state == Schedule.State.DONE


def test_a_fire_kept_out_by_a_unique_run_is_a_skip_not_a_fire(tick, caplog):
    schedule = every_minute(
        name="unique", task_path=UNIQUE_TASK, kwargs={"name": "nightly"}, max_fires=2
    )
    times = [schedule.next_fire_at + k * MINUTE for k in range(4)]
    assert tick(times[0]) == 1
    # The first run still holds the task's unique key: nothing enqueued, nothing fired.
    assert tick(times[1]) == 0
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count) == (1, 1)
    assert (schedule.last_fire_at, schedule.next_fire_at) == (times[0], times[2])
    assert skip_lines(caplog) == [
        f"Schedule 'unique' skipped its fire at {times[1].isoformat()}: a pending or running "
        "run of its task holds the same unique key"
    ]
    assert "already fired" not in caplog.text

    Run.objects.filter(schedule=schedule).update(status=RunStatus.SUCCESSFUL)
    assert tick(times[2]) == 1  # max_fires=2 counts fires only: this is the second
    assert fire_times(schedule) == [times[0], times[2]]
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count, schedule.next_fire_at) == (2, 1, None)


def test_a_rewound_schedule_counts_its_stored_fire_time_neither_as_fire_nor_as_skip(tick, caplog):
    schedule = every_minute(name="rewound")
    first = schedule.next_fire_at
    tick(first)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=first)
    tick(first)
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.skip_count) == (1, 0)
    assert schedule.next_fire_at == first + MINUTE
    assert "already fired" in caplog.text
    assert not skip_lines(caplog)


def test_max_instances_is_a_positive_integer_everywhere(clean_declarations):
    for wrong in (0, -1, True, 1.5, "1"):
        with pytest.raises(InvalidSchedule, match="max_instances must be a positive integer"):
            taskmill.schedule("* * * * *", max_instances=wrong)
    schedule = Schedule(name="x", task_path=TASK, kind="cron", cron="* * * * *", max_instances=0)
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    assert "at least 1" in " ".join(caught.value.message_dict["max_instances"])

    taskmill.schedule("*/5 * * * *", name="declared", max_instances=3)(heartbeat)
    sync_schedules()
    assert Schedule.objects.get(name="declared").max_instances == 3
