"""The fire transaction on a real database: a simulated year of every kind, exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.utils import timezone

from taskmill.models import Run, Schedule
from taskmill.scheduler import firing

from .conftest import fire_times, make_schedule, simulate

pytestmark = pytest.mark.django_db

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2028, 1, 1, tzinfo=UTC)


def expected_daily(zone: str, hour: int, minute: int) -> list[datetime]:
    """Independent of the trigger code: each local day's wall time, mapped by hand.

    A wall time the zone skips fires at the end of the gap; a repeated one, at its first pass.
    """
    tz = ZoneInfo(zone)
    times = []
    day = START.astimezone(tz).date()
    while True:
        wall = datetime(day.year, day.month, day.day, hour, minute)
        moment = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        if moment.astimezone(tz).replace(tzinfo=None) != wall:
            # Skipped: step minute by minute until the zone's clock exists again.
            probe = wall
            while (
                probe.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
                != probe
            ):
                probe += timedelta(minutes=1)
            moment = probe.replace(minute=0).replace(tzinfo=tz).astimezone(UTC)
        if moment >= END:
            return times
        if moment > START:
            times.append(moment)
        day += timedelta(days=1)


# About 800 ticks through the real fire transaction: the main leg runs it on every database;
# the LTS leg leaves it (it proves nothing about the Django version; scripts/test).
@pytest.mark.slow
def test_a_simulated_year_of_every_kind_fires_each_time_once():
    paris = make_schedule(
        START, name="paris", kind="cron", cron="30 2 * * *", timezone="Europe/Paris"
    )
    monday = make_schedule(
        START, name="ny-monday", kind="cron", cron="15 0 9 * * MON", timezone="America/New_York"
    )
    every = make_schedule(
        START,
        name="interval",
        kind="interval",
        interval=timedelta(days=5, hours=3),
        start_at=START + timedelta(hours=1),
    )
    once = make_schedule(
        START, name="once", kind="once", run_at=datetime(2027, 7, 4, 12, tzinfo=UTC)
    )
    until = datetime(2027, 9, 1, tzinfo=UTC)
    bounded = make_schedule(
        START, name="bounded", kind="cron", cron="0 12 1 * *", end_at=until, max_fires=100
    )

    simulate(END - timedelta(microseconds=1))

    assert fire_times(paris) == expected_daily("Europe/Paris", 2, 30)
    ny = ZoneInfo("America/New_York")
    mondays = [
        datetime(2027, 1, 4, 9, 0, 15, tzinfo=ny) + timedelta(weeks=week) for week in range(60)
    ]
    assert fire_times(monday) == [m.astimezone(UTC) for m in mondays if m < END]
    first = START + timedelta(hours=1)
    period = timedelta(days=5, hours=3)
    assert fire_times(every) == [first + k * period for k in range(400) if first + k * period < END]
    assert fire_times(once) == [datetime(2027, 7, 4, 12, tzinfo=UTC)]
    assert fire_times(bounded) == [datetime(2027, m, 1, 12, tzinfo=UTC) for m in range(1, 9)]
    for schedule in (once, bounded):
        schedule.refresh_from_db()
        assert schedule.next_fire_at is None  # finished: never due again
    paris.refresh_from_db()
    assert paris.fire_count == len(expected_daily("Europe/Paris", 2, 30))
    assert Run.objects.count() == sum(
        len(fire_times(s)) for s in (paris, monday, every, once, bounded)
    )


def test_a_stale_scheduler_loses_the_compare_and_set():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    schedule = make_schedule(now, kind="interval", interval=timedelta(minutes=1))
    due = schedule.next_fire_at
    first_reader = Schedule.objects.get(pk=schedule.pk)
    second_reader = Schedule.objects.get(pk=schedule.pk)
    assert firing.fire(first_reader, due, [], "default") == 1
    # The second scheduler read the same row before the first committed: it must lose.
    assert firing.fire(second_reader, due, [], "default") == 0
    assert fire_times(schedule) == [due]


def test_the_unique_fire_time_stops_a_rewound_schedule_and_pruning_never_refires():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    schedule = make_schedule(now, kind="cron", cron="*/10 * * * *")
    first = schedule.next_fire_at
    firing.tick(now=first)
    # Rewound by hand to a time that already fired: the unique index is the backstop.
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=first)
    firing.tick(now=first)
    assert fire_times(schedule) == [first]
    schedule.refresh_from_db()
    assert schedule.next_fire_at == first + timedelta(minutes=10)
    # Pruned runs: the schedule's own state still says the time has fired.
    Run.objects.all().delete()
    firing.tick(now=first + timedelta(minutes=5))
    assert Run.objects.count() == 0


def test_the_fire_time_reaches_the_task_as_an_iso_string_and_queue_priority_apply():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    schedule = make_schedule(
        now,
        kind="cron",
        cron="0 * * * *",
        fire_time_kwarg="fired_at",
        kwargs={"label": "x"},
        queue_name="high",
        priority=7,
    )
    firing.tick(now=schedule.next_fire_at)
    run = Run.objects.get(schedule=schedule)
    assert run.kwargs == {"label": "x", "fired_at": "2027-03-01T01:00:00+00:00"}
    assert (run.queue_name, run.priority) == ("high", 7)
    assert run.scheduled_for == datetime(2027, 3, 1, 1, tzinfo=UTC)


def test_the_tick_reads_only_due_schedules():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    for index in range(20):
        make_schedule(now, name=f"later-{index}", kind="cron", cron="0 0 1 1 *")
    due = make_schedule(now, name="due", kind="interval", interval=timedelta(seconds=30))
    result = firing.tick(now=due.next_fire_at)
    assert (result.schedules, result.runs) == (1, 1)
    if connection.vendor == "postgresql":
        # The tick's own query, as the planner runs it once the table is large.
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
        plan = firing.due_schedules("default", now)[:100].explain()
        # (enabled, paused, next_fire_at): paused schedules are outside the range it reads.
        assert "taskmill_schedule_due" in plan


def test_a_schedule_can_enqueue_on_another_django_tasks_backend():
    from django.test import override_settings

    from taskmill.compat import TASKS_FRAMEWORK, task_backends

    dummy = f"{TASKS_FRAMEWORK}.backends.dummy.DummyBackend"
    tasks_setting = {
        "default": {"BACKEND": "taskmill.backend.DatabaseBackend"},
        "elsewhere": {"BACKEND": dummy},
    }
    with override_settings(TASKS=tasks_setting):
        now = datetime(2027, 3, 1, tzinfo=UTC)
        schedule = make_schedule(
            now,
            kind="interval",
            interval=timedelta(minutes=1),
            backend="elsewhere",
            fire_time_kwarg="fired_at",
        )
        firing.tick(now=schedule.next_fire_at)
        firing.tick(now=schedule.next_fire_at)  # the same due time again: nothing more
        results = task_backends["elsewhere"].results
        assert [result.kwargs for result in results] == [{"fired_at": "2027-03-01T00:01:00+00:00"}]
        assert not Run.objects.exists()  # nothing went to taskmill's table
        schedule.refresh_from_db()
        assert schedule.fire_count == 1


def test_saving_a_stale_copy_never_rewinds_the_schedule():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    schedule = make_schedule(now, kind="interval", interval=timedelta(minutes=1))
    stale = Schedule.objects.get(pk=schedule.pk)  # an admin form opened before the fire
    firing.tick(now=schedule.next_fire_at)
    stale.args = ["edited"]
    stale.save()
    fresh = Schedule.objects.get(pk=schedule.pk)
    assert fresh.args == ["edited"]
    assert fresh.next_fire_at == schedule.next_fire_at + timedelta(minutes=1)
    assert fresh.fire_count == 1
    firing.tick(now=schedule.next_fire_at)  # the fired time is not due again
    assert fire_times(schedule) == [schedule.next_fire_at]


def test_editing_the_trigger_computes_the_next_fire_time_afresh():
    schedule = make_schedule(datetime(2027, 3, 1, tzinfo=UTC), kind="cron", cron="0 0 1 1 *")
    schedule.cron = "*/5 * * * *"
    schedule.save()
    schedule.refresh_from_db()
    assert schedule.next_fire_at.minute % 5 == 0
    assert timedelta(0) < schedule.next_fire_at - timezone.now() <= timedelta(minutes=5)
    schedule.enabled = False
    schedule.save()
    schedule.refresh_from_db()
    assert schedule.next_fire_at is None  # disabled: never due


def test_a_next_fire_time_set_by_hand_fires_then_the_trigger_resumes():
    now = datetime(2027, 3, 1, 10, 0, 7, 250, tzinfo=UTC)
    schedule = make_schedule(now, kind="cron", cron="0 * * * *")
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=now)  # "fire now"
    firing.tick(now=now)
    firing.tick(now=datetime(2027, 3, 1, 11, tzinfo=UTC))
    assert fire_times(schedule) == [now, datetime(2027, 3, 1, 11, tzinfo=UTC)]


def test_a_schedule_loaded_with_deferred_fields_loads_them_on_demand():
    # A schedule read with only() (the dashboard's late schedules) recursed for ever: from_db
    # read every definition field, each deferred read loaded the row through from_db again.
    make_schedule(START, name="partial", kind=Schedule.Kind.INTERVAL, interval=timedelta(hours=1))
    partial = Schedule.objects.only("name").get(name="partial")
    assert partial.interval == timedelta(hours=1)  # loaded on demand, once
    assert not partial.definition_changed
