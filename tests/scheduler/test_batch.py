"""The batched fire and the fire written ahead of its time: few statements, still exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from taskmill.models import Run, Schedule
from taskmill.scheduler import batch, firing
from taskmill.scheduler.loop import Scheduler, SchedulerOptions

from .conftest import fire_times, make_schedule

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2027, 3, 1, tzinfo=UTC)


def due_together(count: int, start: int = 0) -> list[Schedule]:
    schedules = [
        make_schedule(
            T0,
            name=f"together-{index}",
            kind="cron" if index % 2 else "interval",
            cron="* * * * *" if index % 2 else "",
            interval=None if index % 2 else timedelta(minutes=1),
        )
        for index in range(start, start + count)
    ]
    Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(next_fire_at=T0)
    return schedules


def statements_of_a_tick(count: int) -> int:
    due_together(count, start=Schedule.objects.count())
    with CaptureQueriesContext(connection) as queries:
        result = firing.tick(now=T0)
    assert result.runs == count
    return len(queries)


def test_a_tick_fires_a_batch_in_the_same_few_statements_however_many_are_due():
    few = statements_of_a_tick(3)
    Run.objects.all().delete()
    many = statements_of_a_tick(60)
    # The per-schedule fire took four statements each (240 here); a batch takes the same
    # handful. (Django 5.2 on SQLite splits a multi-row insert at 999 parameters: one more.)
    assert many <= few + 1, (few, many)
    assert many < 15
    assert Run.objects.filter(scheduled_for=T0).count() == 60


def test_a_batch_that_lost_a_compare_and_set_is_fired_one_by_one_without_a_double():
    schedules = due_together(5)
    prepared = batch.prepare_due("default", T0, 100, lock=False)
    assert len(prepared) == 5
    # Another scheduler fires one of them first.
    rival = Schedule.objects.get(pk=schedules[2].pk)
    assert firing.fire(rival, T0, [], "default") == 1
    with transaction.atomic():
        assert batch.fire_prepared(prepared, T0, "default") is None  # rolled back whole
    assert Run.objects.count() == 1
    assert firing.tick(now=T0).runs == 4  # the tick takes what is still due, once each
    assert all(fire_times(schedule) == [T0] for schedule in schedules)


def test_a_stored_fire_time_sends_the_batch_one_by_one_and_the_rest_still_fire():
    schedules = due_together(4)
    firing.tick(now=T0)
    # One schedule rewound by hand to the time it fired: the unique index stops it alone.
    Schedule.objects.filter(pk=schedules[0].pk).update(next_fire_at=T0 + timedelta(minutes=1))
    Run.objects.filter(schedule=schedules[0]).update(scheduled_for=T0 + timedelta(minutes=1))
    assert firing.tick(now=T0 + timedelta(minutes=1)).runs == 3
    assert Run.objects.count() == 4 + 3
    for schedule in schedules:
        schedule.refresh_from_db()
        assert schedule.next_fire_at == T0 + timedelta(minutes=2)


def test_the_loop_fires_the_next_time_ahead_never_before_it_and_exactly_once():
    now = timezone.now()
    fire_at = (now + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)
    schedules = [
        make_schedule(now, name=f"ahead-{index}", kind="interval", interval=timedelta(hours=1))
        for index in range(3)
    ]
    Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(next_fire_at=fire_at)
    first, second = (Scheduler(SchedulerOptions(max_sleep=5.0)) for _ in range(2))
    while timezone.now() < fire_at:
        first.run_once()  # wakes before the time, waits for it, fires
    assert timezone.now() >= fire_at
    second.run_once()  # a second scheduler finds nothing left
    assert first.fired + second.fired == 3
    for schedule in schedules:
        assert fire_times(schedule) == [fire_at]
        run = Run.objects.get(schedule=schedule)
        assert run.enqueued_at >= fire_at
        schedule.refresh_from_db()
        assert schedule.next_fire_at == fire_at + timedelta(hours=1)


def test_a_stop_while_waiting_for_the_time_fires_nothing():
    now = timezone.now()
    fire_at = now + timedelta(seconds=0.8)
    schedule = make_schedule(now, name="stopped", kind="interval", interval=timedelta(hours=1))
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=fire_at)
    scheduler = Scheduler(SchedulerOptions(max_sleep=5.0))
    scheduler.request_stop()
    scheduler.run_once()
    assert not Run.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_fire_at == fire_at
