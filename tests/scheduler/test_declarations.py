"""Schedules declared in code, the sync, and the validation every path shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

import taskmill
from taskmill.exceptions import InvalidSchedule
from taskmill.models import Schedule
from taskmill.scheduler.declarations import sync_schedules
from tests.testapp.scheduled_tasks import heartbeat, record_fire

from .conftest import TASK

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_declarations")]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * * *", "expected 5 fields"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("* * * * * * *", "got 7"),
        ("0 25 * * *", "Bad hour"),
    ],
)
def test_an_invalid_cron_expression_is_refused_with_the_reason(expression, reason):
    with pytest.raises(InvalidSchedule, match=reason):
        taskmill.schedule(expression)
    schedule = Schedule(name="bad", task_path=TASK, kind="cron", cron=expression)
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    assert reason in " ".join(caught.value.message_dict["cron"])


def test_the_model_refuses_unknown_tasks_zones_and_missing_trigger_values():
    schedule = Schedule(
        name="x",
        task_path="tests.testapp.scheduled_tasks.nope",
        kind="interval",
        timezone="Mars/Olympus",
        fire_time_kwarg="not a name",
    )
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    errors = caught.value.message_dict
    assert "is not registered" in errors["task_path"][0]
    assert "Unknown time zone 'Mars/Olympus'" in errors["timezone"][0]
    assert "needs an interval" in errors["interval"][0]
    assert "not a valid keyword argument" in errors["fire_time_kwarg"][0]


def test_the_decorator_refuses_bad_arguments_and_clashing_names():
    with pytest.raises(InvalidSchedule, match="exactly one of"):
        taskmill.schedule("* * * * *", every=5)
    with pytest.raises(InvalidSchedule, match="Unknown time zone"):
        taskmill.schedule("* * * * *", tz="Nowhere/Land")
    with pytest.raises(InvalidSchedule, match="misfire_policy"):
        taskmill.schedule("* * * * *", misfire_policy="sometimes")
    with pytest.raises(TypeError, match="goes above @task"):
        taskmill.schedule("* * * * *")(lambda: None)
    taskmill.schedule("0 8 * * *")(heartbeat)
    with pytest.raises(InvalidSchedule, match="its own name"):
        taskmill.schedule("0 9 * * *")(heartbeat)


def test_sync_creates_updates_and_disables_code_schedules():
    taskmill.schedule("30 8 * * *", tz="Europe/Paris", args=["morning"])(heartbeat)
    taskmill.schedule(every=timedelta(minutes=5), name="every-5")(heartbeat)
    taskmill.schedule(at=datetime(2030, 1, 1, tzinfo=UTC), name="new-year")(record_fire)
    report = sync_schedules()
    assert sorted(report.created) == sorted([TASK, "every-5", "new-year"])
    morning = Schedule.objects.get(name=TASK)
    assert (morning.kind, morning.cron, morning.timezone, morning.args) == (
        "cron",
        "30 8 * * *",
        "Europe/Paris",
        ["morning"],
    )
    assert morning.code_owned and morning.next_fire_at is not None
    assert set(sync_schedules().unchanged) == {TASK, "every-5", "new-year"}

    # The code changes: one schedule edited, one removed, one added.
    from taskmill.scheduler import declarations

    declarations._declarations.clear()
    taskmill.schedule("45 9 * * *", tz="Europe/Paris", args=["later"])(heartbeat)
    taskmill.schedule(at=datetime(2030, 1, 1, tzinfo=UTC), name="new-year")(record_fire)
    taskmill.schedule("0 0 * * 0", name="weekly", depends_on=["new-year"])(record_fire)
    report = sync_schedules()
    assert (report.created, report.updated, report.disabled) == (["weekly"], [TASK], ["every-5"])
    morning.refresh_from_db()
    assert (morning.cron, morning.args) == ("45 9 * * *", ["later"])
    assert morning.next_fire_at.astimezone(morning.trigger().zone).strftime("%H:%M") == "09:45"
    removed = Schedule.objects.get(name="every-5")
    assert (removed.enabled, removed.next_fire_at) == (False, None)  # kept, never deleted
    weekly = Schedule.objects.get(name="weekly")
    assert [s.name for s in weekly.depends_on.all()] == ["new-year"]

    # Re-declared: it comes back.
    taskmill.schedule(every=timedelta(minutes=5), name="every-5")(heartbeat)
    assert sync_schedules().updated == ["every-5"]
    assert Schedule.objects.get(name="every-5").enabled


def test_sync_refuses_a_declared_cycle_and_an_unknown_dependency():
    taskmill.schedule("0 * * * *", name="a", depends_on=["b"])(heartbeat)
    taskmill.schedule("0 * * * *", name="b", depends_on=["a"])(heartbeat)
    with pytest.raises(ValidationError, match="cycle: a -> b -> a"):
        sync_schedules()
    assert not Schedule.objects.exists()
    from taskmill.scheduler import declarations

    declarations._declarations.clear()
    taskmill.schedule("0 * * * *", name="c", depends_on=["ghost"])(heartbeat)
    with pytest.raises(ValidationError, match="'ghost', which is not a schedule"):
        sync_schedules()


def test_the_sync_schedules_command(capsys):
    taskmill.schedule("*/5 * * * *", name="cmd")(heartbeat)
    call_command("taskmill", "sync-schedules")
    assert "created: cmd" in capsys.readouterr().out
    assert Schedule.objects.filter(name="cmd", code_owned=True).exists()


def test_the_model_refuses_a_queue_the_backend_does_not_have():
    schedule = Schedule(
        name="q", task_path=TASK, kind="cron", cron="* * * * *", queue_name="nowhere"
    )
    with pytest.raises(ValidationError) as caught:
        schedule.full_clean()
    assert "nowhere" in caught.value.message_dict["queue_name"][0]
