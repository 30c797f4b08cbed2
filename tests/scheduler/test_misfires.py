"""Misfire policies after a simulated outage, and the catch-up bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from taskmill.models import Run, Schedule
from taskmill.scheduler import firing

from .conftest import fire_times, make_schedule

pytestmark = pytest.mark.django_db

CREATED = datetime(2027, 5, 1, tzinfo=UTC)
# Back a day later, 30 s after a minute boundary: the fire of 30 s ago is within the
# 60 s grace, everything before it is missed.
BACK = CREATED + timedelta(days=1, seconds=30)
ON_TIME = CREATED + timedelta(days=1)


def per_minute(policy: str, **fields) -> Schedule:
    return make_schedule(
        CREATED,
        kind="cron",
        cron="* * * * *",
        misfire_policy=policy,
        misfire_grace=timedelta(seconds=60),
        fire_time_kwarg="fired_at",
        **fields,
    )


def test_skip_drops_the_missed_fires_and_keeps_the_on_time_one():
    schedule = per_minute("skip")
    firing.tick(now=BACK)
    assert fire_times(schedule) == [ON_TIME]
    schedule.refresh_from_db()
    assert schedule.next_fire_at == ON_TIME + timedelta(minutes=1)
    assert schedule.fire_count == 1


def test_run_once_fires_once_for_all_missed_with_the_latest_missed_time():
    schedule = per_minute("run_once")
    firing.tick(now=BACK)
    assert fire_times(schedule) == [ON_TIME - timedelta(minutes=1), ON_TIME]
    run = Run.objects.get(schedule=schedule, scheduled_for=ON_TIME - timedelta(minutes=1))
    assert run.kwargs["fired_at"] == "2027-05-01T23:59:00+00:00"


def test_catch_up_fires_every_missed_time_up_to_the_bound():
    schedule = per_minute("catch_up")
    firing.tick(now=BACK)
    expected = [ON_TIME - timedelta(minutes=k) for k in range(99, -1, -1)]  # the latest 100
    assert fire_times(schedule) == expected
    schedule.refresh_from_db()
    assert schedule.next_fire_at == ON_TIME + timedelta(minutes=1)


def test_catch_up_of_a_small_outage_fires_everything_once():
    schedule = per_minute("catch_up")
    back = CREATED + timedelta(minutes=10, seconds=30)
    firing.tick(now=back)
    firing.tick(now=back)  # a second pass finds nothing left to fire
    assert fire_times(schedule) == [CREATED + timedelta(minutes=k) for k in range(1, 11)]


@override_settings(TASKMILL_SCHEDULER_CATCH_UP_LIMIT=5)
def test_a_per_second_schedule_back_from_a_week_enqueues_only_the_bound():
    schedule = make_schedule(
        CREATED, kind="interval", interval=timedelta(seconds=1), misfire_policy="catch_up"
    )
    back = CREATED + timedelta(weeks=1)
    result = firing.tick(now=back)
    assert result.runs == 5
    assert fire_times(schedule) == [back - timedelta(seconds=k) for k in range(4, -1, -1)]


def test_a_missed_once_schedule_is_skipped_or_run_once():
    run_at = CREATED + timedelta(hours=1)
    skipped = make_schedule(CREATED, name="skip", kind="once", run_at=run_at, misfire_policy="skip")
    late = make_schedule(
        CREATED, name="late", kind="once", run_at=run_at, misfire_policy="run_once"
    )
    firing.tick(now=run_at + timedelta(hours=5))
    assert fire_times(skipped) == []
    assert fire_times(late) == [run_at]
    for schedule in (skipped, late):
        schedule.refresh_from_db()
        assert schedule.next_fire_at is None


def test_a_late_fire_within_the_grace_time_is_not_a_misfire():
    schedule = make_schedule(
        CREATED,
        kind="cron",
        cron="0 * * * *",
        misfire_policy="skip",
        misfire_grace=timedelta(minutes=10),
    )
    firing.tick(now=CREATED + timedelta(hours=1, minutes=9))
    assert fire_times(schedule) == [CREATED + timedelta(hours=1)]


def test_a_per_second_cron_back_from_a_week_catches_up_only_the_latest_hundred():
    schedule = make_schedule(
        CREATED,
        kind="cron",
        cron="* * * * * *",
        misfire_policy="catch_up",
        timezone="Europe/Paris",
    )
    back = CREATED + timedelta(weeks=1, microseconds=500)
    result = firing.tick(now=back)
    assert result.runs == 100
    latest = back.replace(microsecond=0)
    assert fire_times(schedule) == [latest - timedelta(seconds=k) for k in range(99, -1, -1)]
    schedule.refresh_from_db()
    assert schedule.next_fire_at == latest + timedelta(seconds=1)
