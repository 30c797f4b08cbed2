"""The loop's sleep: until the next due schedule, bounded, never zero for what it cannot fire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskmill.models import Schedule
from taskmill.scheduler.loop import Scheduler, SchedulerOptions

from .conftest import make_schedule

pytestmark = pytest.mark.django_db


def test_the_loop_sleeps_until_the_next_due_time_bounded_by_max_sleep():
    idle = Scheduler(SchedulerOptions(max_sleep=60.0))
    assert idle.run_once() == 60.0  # nothing scheduled: the longest sleep

    now = timezone.now()
    schedule = make_schedule(now, kind="interval", interval=timedelta(seconds=30))
    assert 28.0 < idle.run_once() <= 30.0
    assert Scheduler(SchedulerOptions(max_sleep=1.0)).run_once() == 1.0

    # Due but waiting (its dependencies, say): not fired, and no busy loop over it.
    Schedule.objects.filter(pk=schedule.pk).update(
        next_fire_at=now - timedelta(seconds=1), blocked_until=now + timedelta(minutes=5)
    )
    scheduler = Scheduler(SchedulerOptions(max_sleep=5.0))
    assert scheduler.run_once() == 5.0
    assert scheduler.fired == 0


def test_a_due_schedule_is_fired_by_the_loop_then_it_sleeps():
    now = timezone.now()
    schedule = make_schedule(now, kind="interval", interval=timedelta(hours=1))
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=now)
    scheduler = Scheduler(SchedulerOptions(max_sleep=10.0))
    assert scheduler.run_once() == 10.0
    assert scheduler.fired == 1
