"""The schedule admin: the task choice list, clear cron errors, cycles refused, code rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from taskmill.admin.schedules import ScheduleForm
from taskmill.models import Schedule

from .conftest import TASK, make_schedule

pytestmark = pytest.mark.django_db


def form_data(**values) -> dict:
    data = {
        "name": "nightly",
        "task_path": TASK,
        "args": "[]",
        "kwargs": "{}",
        "enabled": "on",
        "kind": "cron",
        "cron": "30 2 * * *",
        "timezone": "Europe/Paris",
        "misfire_grace": "00:01:00",
        "misfire_policy": "run_once",
        "fire_count": "0",
        "skip_count": "0",
    }
    data.update(values)
    return data


def test_the_form_offers_only_declared_tasks_and_explains_a_bad_cron():
    form = ScheduleForm()
    choices = [value for value, _ in form.fields["task_path"].choices]
    assert TASK in choices
    assert "tests.testapp.scheduled_tasks.os" not in choices

    form = ScheduleForm(data=form_data(cron="30 2 * *"))
    assert not form.is_valid()
    assert "expected 5 fields" in form.errors["cron"][0]

    form = ScheduleForm(data=form_data())
    assert form.is_valid(), form.errors
    schedule = form.save()
    assert schedule.next_fire_at is not None


def test_the_form_refuses_a_dependency_cycle():
    now = datetime(2027, 1, 1, tzinfo=UTC)
    first = make_schedule(now, name="first", kind="cron", cron="0 * * * *")
    second = make_schedule(now, name="second", kind="cron", cron="0 * * * *")
    second.depends_on.add(first)
    form = ScheduleForm(
        instance=first,
        data=form_data(name="first", cron="0 * * * *", depends_on=[str(second.pk)]),
    )
    assert not form.is_valid()
    assert "cycle: first -> second -> first" in form.errors["depends_on"][0]


def test_the_admin_pages_show_schedules_and_code_ownership(client):
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    owned = make_schedule(now, name="from-code", kind="cron", cron="0 8 * * *", code_owned=True)
    page = client.get("/admin/taskmill/schedule/")
    assert page.status_code == 200
    assert b"from-code" in page.content
    change = client.get(f"/admin/taskmill/schedule/{owned.pk}/change/")
    assert change.status_code == 200
    assert b'name="cron"' not in change.content  # code-owned: read-only
    add = client.get("/admin/taskmill/schedule/add/")
    assert add.status_code == 200
    assert TASK.encode() in add.content
    assert Schedule.objects.count() == 1


def test_max_instances_is_edited_in_the_form_and_skipped_fires_shown_beside_the_fires(
    admin_client,
):
    now = datetime(2027, 1, 1, tzinfo=UTC)
    schedule = make_schedule(now, name="limited", kind="cron", cron="0 8 * * *")
    Schedule.objects.filter(pk=schedule.pk).update(fire_count=7, skip_count=5)
    page = admin_client.get("/admin/taskmill/schedule/").content.decode()
    # Beside the fire count, in the list:
    assert 'fired</dt><dd><span class="field-fire_count">7</span>, skipped ' in page
    assert '<span class="field-skip_count">5</span>' in page

    url = f"/admin/taskmill/schedule/{schedule.pk}/change/"
    change = admin_client.get(url).content.decode()
    assert 'name="max_instances"' in change
    assert 'name="skip_count"' not in change  # the scheduler's state: shown, not edited
    data = {
        **form_data(name="limited", cron="0 8 * * *", max_instances="2", skip_count="0"),
        "timezone": "UTC",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()
    schedule.refresh_from_db()
    assert (schedule.max_instances, schedule.skip_count) == (2, 5)

    response = admin_client.post(url, {**data, "max_instances": "0"})
    assert "The maximum number of instances must be at least 1" in response.content.decode()
