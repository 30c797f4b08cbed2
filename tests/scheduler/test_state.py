"""A schedule's state as an operator reads it: scheduled, paused, disabled or done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskmill.models import Schedule
from taskmill.scheduler import firing

from .conftest import make_schedule, simulate

pytestmark = pytest.mark.django_db

CREATED = datetime(2027, 5, 1, tzinfo=UTC)
State = Schedule.State


def states() -> dict[str, str]:
    return {schedule.name: schedule.state for schedule in Schedule.objects.all()}


def assert_sql_agrees() -> None:
    """``in_state()`` (what an admin filter runs) picks exactly the rows ``state`` names."""
    by_property = states()
    for state in State:
        in_sql = set(Schedule.objects.in_state(state).values_list("name", flat=True))
        assert in_sql == {name for name, seen in by_property.items() if seen == state}, state
    done = set(Schedule.objects.done().values_list("name", flat=True))
    assert done == {name for name, seen in by_property.items() if seen == State.DONE}


def test_a_once_schedule_is_done_after_its_fire():
    once = make_schedule(CREATED, name="once", kind="once", run_at=CREATED + timedelta(hours=1))
    assert (once.state, once.is_done) == (State.SCHEDULED, False)
    firing.tick(now=CREATED + timedelta(hours=1))
    once.refresh_from_db()
    assert once.enabled  # still enabled: nothing else said it was finished
    assert (once.fire_count, once.next_fire_at) == (1, None)
    assert (once.state, once.is_done) == (State.DONE, True)
    assert_sql_agrees()


def test_max_fires_and_an_end_in_the_past_make_a_schedule_done():
    make_schedule(
        CREATED, name="capped", kind="interval", interval=timedelta(minutes=1), max_fires=2
    )
    make_schedule(
        CREATED,
        name="ended",
        kind="interval",
        interval=timedelta(minutes=1),
        end_at=CREATED + timedelta(minutes=3),
    )
    make_schedule(CREATED, name="running", kind="interval", interval=timedelta(hours=1))
    simulate(until=CREATED + timedelta(minutes=10))
    assert states() == {"capped": State.DONE, "ended": State.DONE, "running": State.SCHEDULED}
    assert Schedule.objects.get(name="capped").fire_count == 2
    assert Schedule.objects.get(name="ended").fire_count == 3
    assert_sql_agrees()


def test_disabled_is_not_done_unless_nothing_would_be_left_to_fire():
    fired = make_schedule(CREATED, name="fired", kind="once", run_at=CREATED + timedelta(hours=1))
    firing.tick(now=CREATED + timedelta(hours=1))
    waiting = make_schedule(
        CREATED, name="waiting", kind="once", run_at=CREATED + timedelta(days=9)
    )
    for schedule in (Schedule.objects.get(pk=fired.pk), waiting):
        schedule.enabled = False
        schedule.save()
    # Both have no next fire time now; only the one whose time already fired is done.
    assert states() == {"fired": State.DONE, "waiting": State.DISABLED}
    assert_sql_agrees()


def test_paused_reads_paused_until_resumed_and_done_wins_over_paused():
    from taskmill import pause_schedule, resume_schedule

    live = make_schedule(CREATED, name="live", kind="interval", interval=timedelta(hours=1))
    make_schedule(CREATED, name="once", kind="once", run_at=CREATED + timedelta(minutes=1))
    firing.tick(now=CREATED + timedelta(minutes=1))
    assert pause_schedule(live) and pause_schedule("once")
    assert states() == {"live": State.PAUSED, "once": State.DONE}
    assert_sql_agrees()
    assert resume_schedule(live.pk)
    assert states()["live"] == State.SCHEDULED
    assert_sql_agrees()
