"""The operator's pause: control functions, the tick, the code sync, a real scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

import taskmill
from taskmill.models import Run, Schedule
from taskmill.schedule_control import pause_schedule, resume_schedule
from taskmill.scheduler import firing
from taskmill.scheduler.declarations import sync_schedules
from tests.conftest import wait_until
from tests.testapp.scheduled_tasks import heartbeat

from .conftest import fire_times, make_schedule

CREATED = datetime(2027, 5, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def per_minute(policy: str = "run_once", **fields) -> Schedule:
    return make_schedule(CREATED, kind="cron", cron="* * * * *", misfire_policy=policy, **fields)


@pytest.mark.django_db
def test_pause_and_resume_say_whether_they_changed_anything():
    schedule = per_minute(name="nightly")
    assert taskmill.pause_schedule is pause_schedule  # exported next to the run controls
    assert pause_schedule(schedule) is True
    assert schedule.paused and schedule.paused_at is not None  # the instance follows
    assert pause_schedule("nightly") is False  # by name; already paused
    row = Schedule.objects.get(pk=schedule.pk)
    assert (row.paused, row.paused_at) == (True, schedule.paused_at)
    assert resume_schedule(schedule.pk) is True  # by id
    assert resume_schedule(schedule) is False
    row.refresh_from_db()
    assert (row.paused, row.paused_at) == (False, None)
    with pytest.raises(Schedule.DoesNotExist, match="No schedule 'nope'"):
        pause_schedule("nope")


@pytest.mark.django_db
def test_a_paused_schedule_does_not_fire_and_is_not_waited_for():
    paused = per_minute(name="paused")
    pause_schedule(paused)
    assert firing.tick(now=CREATED + 5 * MINUTE).runs == 0
    assert fire_times(paused) == []
    paused.refresh_from_db()
    # Its next fire time stays where it was: what it misses is known at resume.
    assert paused.next_fire_at == CREATED + MINUTE
    assert firing.next_due_at("default", CREATED) is None  # the loop does not wake for it


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # Paused from 00:00:30 to 01:00:30 (an hour); resumed, the 01:00 fire is on time.
        ("skip", [CREATED + 60 * MINUTE]),
        ("run_once", [CREATED + 59 * MINUTE, CREATED + 60 * MINUTE]),
        ("catch_up", [CREATED + k * MINUTE for k in range(1, 61)]),
    ],
)
def test_on_resume_the_missed_fires_follow_the_misfire_policy(policy, expected):
    schedule = per_minute(policy)
    pause_schedule(schedule)
    firing.tick(now=CREATED + 30 * MINUTE)  # a scheduler runs meanwhile: nothing fires
    resume_schedule(schedule)
    firing.tick(now=CREATED + 60 * MINUTE + timedelta(seconds=30))
    assert fire_times(schedule) == expected
    schedule.refresh_from_db()
    assert schedule.next_fire_at == CREATED + 61 * MINUTE


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_declarations")
def test_the_code_sync_and_a_saved_form_never_touch_the_pause():
    taskmill.schedule(every=timedelta(minutes=5), name="declared")(heartbeat)
    sync_schedules()
    assert pause_schedule("declared")
    stale = Schedule.objects.get(name="declared")
    # The declaration changes: the sync updates the row and leaves it paused.
    from taskmill.scheduler import declarations

    declarations._declarations.clear()
    taskmill.schedule(every=timedelta(minutes=7), name="declared")(heartbeat)
    assert sync_schedules().updated == ["declared"]
    row = Schedule.objects.get(name="declared")
    assert (row.interval, row.paused) == (timedelta(minutes=7), True)
    # A copy read while paused, saved after a resume (an admin form), does not re-pause it.
    resume_schedule("declared")
    stale.queue_name = "high"
    stale.save()
    row.refresh_from_db()
    assert (row.queue_name, row.paused, row.paused_at) == ("high", False, None)


@pytest.mark.django_db
def test_the_pause_does_not_travel_in_an_export_or_an_import():
    from taskmill.scheduler.transfer import (
        TransferError,
        dumps,
        export_document,
        import_entries,
        parse_document,
    )

    schedule = per_minute(name="nightly")
    pause_schedule(schedule)
    document = export_document("default")
    assert not {"paused", "paused_at"} & set(document["schedules"][0])
    # Imported back with a change: updated, and still paused.
    document["schedules"][0]["queue_name"] = "high"
    assert import_entries(parse_document(dumps(document)), "default").updated == ["nightly"]
    row = Schedule.objects.get(name="nightly")
    assert (row.queue_name, row.paused) == ("high", True)
    # A file cannot pause anything.
    document["schedules"][0]["paused"] = True
    with pytest.raises(TransferError, match="paused"):
        parse_document(dumps(document))


@pytest.mark.django_db(transaction=True)
def test_a_real_scheduler_honours_a_pause_through_its_restart_sync(start_scheduler):
    first = start_scheduler("--max-sleep", "0.2")
    declared = wait_until(
        lambda: Schedule.objects.filter(name="declared-every-second").first(), timeout=30
    )
    wait_until(lambda: Run.objects.filter(schedule=declared).exists(), timeout=30)
    # A witness fires every second beside it: proof the scheduler is ticking meanwhile.
    witness = make_schedule(timezone.now(), name="witness", kind="interval", interval=MINUTE / 60)
    assert pause_schedule("declared-every-second")
    # The pause's UPDATE waited for any tick holding the row: nothing more can land now.
    before = Run.objects.filter(schedule=declared).count()
    wait_until(lambda: Run.objects.filter(schedule=witness).count() >= 3, timeout=30)
    first.signal()
    assert first.wait(30) == 0, first.output

    # A new scheduler syncs the code's declarations at start: the pause stays.
    second = start_scheduler("--max-sleep", "0.2")
    second.wait_for_output("Schedules declared in code synced")
    witnessed = Run.objects.filter(schedule=witness).count()
    wait_until(lambda: Run.objects.filter(schedule=witness).count() >= witnessed + 3, timeout=30)
    assert Schedule.objects.get(pk=declared.pk).paused
    assert Run.objects.filter(schedule=declared).count() == before

    assert resume_schedule("declared-every-second")
    wait_until(
        lambda: Run.objects.filter(schedule=declared).count() > before,
        timeout=30,
        message=lambda: f"fires after the resume; output:\n{second.output}",
    )
    second.signal()
    assert second.wait(30) == 0, second.output
