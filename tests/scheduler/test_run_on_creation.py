"""``run_on_creation``: a new schedule fires once at once, then keeps the times its trigger
gives; a schedule that exists (edited, updated by a deploy's sync) never fires for it; and
two real schedulers racing fire it exactly once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

import taskmill
from taskmill.exceptions import InvalidSchedule
from taskmill.models import Run, Schedule
from taskmill.scheduler import declarations, firing
from taskmill.scheduler.declarations import sync_schedules
from taskmill.scheduler.transfer.importing import import_entries, parse_document
from tests.conftest import wait_until
from tests.testapp.scheduled_tasks import heartbeat

from .conftest import TASK, fire_times, simulate

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def created(**fields) -> Schedule:
    """A schedule created now, as a form, the shell or a sync creates one."""
    fields.setdefault("task_path", TASK)
    fields.setdefault("name", f"new-{Schedule.objects.count()}")
    fields.setdefault("timezone", "UTC")
    fields.setdefault("run_on_creation", True)
    schedule = Schedule(**fields)
    schedule.full_clean()
    schedule.save()
    schedule.refresh_from_db()
    return schedule


def test_a_new_schedule_fires_once_at_once_then_keeps_its_times():
    schedule = created(kind="interval", interval=HOUR)
    born = schedule.next_fire_at
    assert born <= schedule.created_at <= born + timedelta(seconds=5)  # due as it was created

    assert firing.tick(now=born + timedelta(milliseconds=300)).runs == 1
    schedule.refresh_from_db()
    assert (schedule.fire_count, schedule.last_fire_at) == (1, born)
    # Then the times it would have had: an hour after its creation, and so on.
    assert schedule.next_fire_at == born + HOUR
    assert firing.tick(now=born + timedelta(seconds=1)).runs == 0
    simulate(until=born + 2 * HOUR)
    assert fire_times(schedule) == [born, born + HOUR, born + 2 * HOUR]


def test_every_kind_keeps_its_own_times_after_the_creation_fire():
    cron = created(kind="cron", cron="0 * * * *")
    later = timezone.now() + timedelta(days=1)
    start = later.replace(minute=0, second=0, microsecond=0)
    starting = created(kind="interval", interval=HOUR, start_at=start)
    once_ahead = created(kind="once", run_at=later)
    once_past = created(kind="once", run_at=timezone.now() - timedelta(days=1))
    single = created(kind="interval", interval=HOUR, max_fires=1)
    schedules = [cron, starting, once_ahead, once_past, single]
    born = max(schedule.next_fire_at for schedule in schedules)

    assert firing.tick(now=born + timedelta(milliseconds=300)).runs == len(schedules)
    for schedule in schedules:
        schedule.refresh_from_db()
        assert fire_times(schedule) == [schedule.last_fire_at], schedule.name
    top_of_the_hour = (cron.last_fire_at + HOUR).replace(minute=0, second=0, microsecond=0)
    assert cron.next_fire_at == top_of_the_hour  # the cron's next time, not an hour on
    assert starting.next_fire_at == start  # at its start, then every hour from it
    assert once_ahead.next_fire_at == later  # and at its time
    # A once-schedule whose time had passed: the creation's fire stands for it.
    assert once_past.next_fire_at is None and once_past.is_done
    assert single.next_fire_at is None and single.is_done  # max_fires=1: that was its fire

    simulate(until=start + HOUR)
    assert fire_times(starting)[1:] == [start, start + HOUR]
    assert fire_times(once_ahead)[1:] == [later]


def test_only_a_new_schedule_fires_for_it():
    # An existing schedule switched to run_on_creation, or edited: its times as before.
    existing = created(kind="interval", interval=HOUR, run_on_creation=False)
    regular = existing.next_fire_at
    existing.run_on_creation = True
    existing.save()
    existing.refresh_from_db()
    assert existing.next_fire_at == regular
    existing.interval = 2 * HOUR  # a definition change computes the next time afresh
    existing.save()
    existing.refresh_from_db()
    assert existing.next_fire_at > timezone.now() + HOUR
    # Created disabled: nothing at once, nor when it is enabled later.
    disabled = created(kind="interval", interval=HOUR, enabled=False)
    assert disabled.next_fire_at is None
    disabled.enabled = True
    disabled.save()
    disabled.refresh_from_db()
    assert disabled.next_fire_at > timezone.now() + timedelta(minutes=59)
    # Created past its end: nothing to fire.
    ended = created(kind="interval", interval=HOUR, end_at=timezone.now() - HOUR)
    assert ended.next_fire_at is None
    assert firing.tick(now=timezone.now() + timedelta(seconds=1)).runs == 0


def test_a_late_creation_fire_follows_the_misfire_policy():
    skipped = created(kind="interval", interval=HOUR, misfire_policy="skip")
    late = created(kind="interval", interval=HOUR)  # run_once, the default
    born = late.next_fire_at
    # No scheduler for five minutes: past the minute of grace.
    firing.tick(now=born + timedelta(minutes=5))
    assert fire_times(skipped) == []
    assert fire_times(late) == [born]  # its own time, late
    skipped.refresh_from_db()
    assert skipped.fire_count == 0 and skipped.next_fire_at > born


@pytest.mark.usefixtures("clean_declarations")
def test_a_schedule_the_sync_creates_fires_once_and_an_updated_one_not_again():
    taskmill.schedule(every=HOUR, name="declared", run_on_creation=True)(heartbeat)
    assert sync_schedules().created == ["declared"]
    row = Schedule.objects.get(name="declared")
    assert row.run_on_creation and row.next_fire_at <= row.created_at
    assert firing.tick(now=row.next_fire_at + timedelta(seconds=1)).runs == 1
    # The next deploy changes the declaration: the sync updates the row, nothing fires.
    declarations._declarations.clear()  # as a new process would start
    taskmill.schedule(every=HOUR, name="declared", run_on_creation=True, kwargs={"label": "v2"})(
        heartbeat
    )
    assert sync_schedules().updated == ["declared"]
    row.refresh_from_db()
    assert row.fire_count == 1 and row.next_fire_at > timezone.now() + timedelta(minutes=59)
    assert firing.tick(now=timezone.now() + timedelta(seconds=1)).runs == 0
    with pytest.raises(InvalidSchedule, match="run_on_creation must be True or False"):
        taskmill.schedule(every=HOUR, name="bad", run_on_creation="yes")


def test_the_admin_form_and_an_import_create_schedules_that_fire_at_once(admin_client):
    page = admin_client.get("/admin/taskmill/schedule/add/").content.decode()
    assert 'name="run_on_creation"' in page
    data = {
        "name": "from the admin", "task_path": TASK, "args": "[]", "kwargs": "{}",
        "enabled": "on", "run_on_creation": "on", "kind": "interval", "interval": "1:00:00",
        "timezone": "UTC", "misfire_grace": "00:01:00", "misfire_policy": "run_once",
        "priority": "",
    }  # fmt: skip
    response = admin_client.post("/admin/taskmill/schedule/add/", data)
    assert response.status_code == 302, response.content.decode()
    from_admin = Schedule.objects.get(name="from the admin")
    assert from_admin.run_on_creation and from_admin.next_fire_at <= from_admin.created_at
    document = {
        "format": "taskmill-schedules",
        "version": 1,
        "schedules": [
            {"name": "imported", "task_path": TASK, "kind": "interval", "interval": 3600,
             "run_on_creation": True},
            {"name": "from the admin", "task_path": TASK, "kind": "interval", "interval": 7200,
             "run_on_creation": True},
        ],
    }  # fmt: skip
    import_entries(parse_document(json.dumps(document)), "default")  # creates one, updates one
    imported = Schedule.objects.get(name="imported")
    assert imported.next_fire_at <= imported.created_at
    assert firing.tick(now=timezone.now() + timedelta(seconds=1)).runs == 2
    assert [len(fire_times(s)) for s in (from_admin, imported)] == [1, 1]
    from_admin.refresh_from_db()
    assert from_admin.next_fire_at > timezone.now() + timedelta(minutes=119)  # updated: 2 h


def test_an_export_carries_it():
    from taskmill.scheduler.transfer.document import export_document

    created(name="exported", kind="interval", interval=HOUR)
    (item,) = export_document("default")["schedules"]
    assert item["run_on_creation"] is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_schedulers_racing_fire_each_new_schedule_exactly_once(start_scheduler):
    schedulers = [start_scheduler("--no-sync", "--max-sleep", "0.2") for _ in range(2)]
    for scheduler in schedulers:
        scheduler.wait_for_output("Scheduler started")
    count = 30
    # Created in one transaction: both schedulers find them all due in the same instant.
    # Half with max_instances, which the tick fires one by one; the others in a batch.
    with transaction.atomic():
        for index in range(count):
            created(
                name=f"race-{index:02d}",
                kind="interval",
                interval=HOUR,
                max_instances=1 if index % 2 else None,
            )
    wait_until(
        lambda: Run.objects.filter(schedule__isnull=False).count() >= count,
        timeout=60,
        message="every new schedule's fire",
    )
    wait_until(
        lambda: not Schedule.objects.filter(next_fire_at__lte=timezone.now()).exists(),
        timeout=30,
        message="no schedule due any more",
    )
    for scheduler in schedulers:
        scheduler.signal()
    for scheduler in schedulers:
        assert scheduler.wait(30) == 0, scheduler.output

    per_schedule = dict(
        Run.objects.values_list("schedule__name")
        .annotate(n=Count("id"))
        .values_list("schedule__name", "n")
    )
    assert per_schedule == {f"race-{index:02d}": 1 for index in range(count)}
    for schedule in Schedule.objects.all():
        (run,) = Run.objects.filter(schedule=schedule)
        assert run.scheduled_for == schedule.last_fire_at <= schedule.created_at
        assert schedule.fire_count == 1
        assert schedule.next_fire_at == run.scheduled_for + HOUR
    outputs = "\n".join(scheduler.output for scheduler in schedulers)
    assert "already fired" not in outputs and "Traceback" not in outputs
    enqueued_by = [int(s.output.rsplit("after ", 1)[1].split()[0]) for s in schedulers]
    assert sum(enqueued_by) == count
    print(f"runs enqueued per scheduler: {enqueued_by}")


def test_created_at_is_what_marks_the_creation_fire():
    # A schedule whose due time was set by hand well before its creation is not taken for
    # one: its fire goes by the misfire rules like any other.
    schedule = created(kind="interval", interval=HOUR, run_on_creation=False)
    Schedule.objects.filter(pk=schedule.pk).update(
        run_on_creation=True, next_fire_at=schedule.created_at - timedelta(days=1)
    )
    schedule.refresh_from_db()
    assert not schedule.is_creation_fire()
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=schedule.created_at)
    schedule.refresh_from_db()
    assert schedule.is_creation_fire()


def test_the_admin_page_lists_the_creation_fire_then_the_regular_times():
    from taskmill.admin.schedule_views import next_fire_times

    start = (timezone.now() + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    schedule = created(kind="interval", interval=HOUR, start_at=start)
    born = schedule.next_fire_at
    assert next_fire_times(schedule, 3) == [born, start, start + HOUR]
    single = created(kind="interval", interval=HOUR, max_fires=1)
    assert next_fire_times(single) == [single.next_fire_at]
