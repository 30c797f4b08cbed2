"""A schedule's admin page: its next fire times in its own time zone, its recent runs, and
"run now", which enqueues a run without counting as a fire."""

from __future__ import annotations

import pytest
from django.utils import timezone

from taskmill.models import Run, Schedule

pytestmark = pytest.mark.django_db

TASK = "tests.testapp.scheduled_tasks.heartbeat"
URL = "/admin/taskmill/schedule/"


def made_here(**fields) -> Schedule:
    schedule = Schedule(name=fields.pop("name", "nightly"), task_path=TASK, **fields)
    schedule.full_clean()
    schedule.save()
    return Schedule.objects.get(pk=schedule.pk)


def test_the_page_shows_the_next_five_fire_times_in_the_schedules_zone(admin_client):
    schedule = made_here(kind="cron", cron="30 2 * * *", timezone="Europe/Paris")
    page = admin_client.get(f"{URL}{schedule.pk}/change/").content.decode()
    # Five nights at 02:30 Paris time, written in Paris time (CET in winter).
    assert page.count(" 02:30:00 CET</div>") == 5
    assert "none yet" in page  # no run so far


def test_the_list_says_when_in_words_with_the_next_fire(admin_client):
    from datetime import timedelta

    made_here(kind="cron", cron="30 2 * * *", timezone="Europe/Paris")
    made_here(name="often", kind="interval", interval=timedelta(seconds=30))
    page = admin_client.get(URL).content.decode()
    assert "at 02:30 every day (Europe/Paris)" in page
    assert "every 30 seconds" in page and "0:00:30" not in page
    # The next fire time, first in the "fires" cell, to the second with the whole in its title.
    assert '<dt>next</dt><dd class="field-next_fire"><time datetime=' in page


def test_run_now_enqueues_a_run_that_is_not_a_fire(admin_client):
    schedule = made_here(kind="interval", interval=timezone.timedelta(hours=1))
    response = admin_client.post(
        URL, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True
    )
    run = Run.objects.get()
    assert f"nightly → run {run.pk}" in response.content.decode()
    assert (run.schedule_id, run.scheduled_for, run.status) == (schedule.pk, None, "READY")
    schedule.refresh_from_db()
    assert schedule.fire_count == 0  # not a fire
    page = admin_client.get(f"{URL}{schedule.pk}/change/").content.decode()
    assert f"#{run.pk}</a> fire run now: READY" in page


def test_enable_and_disable_leave_schedules_declared_in_code_alone(admin_client):
    mine = made_here(name="mine", kind="interval", interval=timezone.timedelta(minutes=5))
    coded = made_here(name="coded", kind="interval", interval=timezone.timedelta(minutes=5))
    Schedule.objects.filter(pk=coded.pk).update(code_owned=True)
    response = admin_client.post(
        URL, {"action": "disable", "_selected_action": [mine.pk, coded.pk]}, follow=True
    )
    assert "Declared in code, left as the code says: coded." in response.content.decode()
    assert not Schedule.objects.get(pk=mine.pk).enabled
    assert Schedule.objects.get(pk=coded.pk).enabled
    page = admin_client.get(f"{URL}{mine.pk}/change/").content.decode()
    assert "none: disabled" in page
