"""Arguments on the control room's pages: hidden from who may not see them, and sensitive
values masked (TASKMILL_ADMIN_MASKED_KEYS at any depth, the TASKMILL_ADMIN_MASK hook) on
every page, for everyone, superusers included; never found by a search that guesses them."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import override_settings

from taskmill.admin.masking import MASK
from taskmill.models import Run, Schedule

from .control_room import PAGES, World, allowed, make_world

pytestmark = pytest.mark.django_db

RUNS = "/admin/taskmill/run/"
SCHEDULES = "/admin/taskmill/schedule/"

KWARGS = {
    "to": "a@b.c",
    "password": "hunter2",
    "nested": {"Token": "t0k3n", "items": [{"API_KEY": "k3y-1"}, "plain-item"]},
}
ARGS = [{"secret": "s3cr3t"}, "plain-arg"]
RETURNED = {"authorization": "Bearer xyz", "result": "r-ok"}
SECRETS = ("hunter2", "t0k3n", "k3y-1", "s3cr3t", "Bearer xyz")
PLAIN = ("a@b.c", "plain-item", "plain-arg")


@pytest.fixture
def world() -> World:
    """The usual rows, the failed run and the schedule holding secrets."""
    made = make_world()
    Run.objects.filter(pk=made.failed).update(args=ARGS, kwargs=KWARGS, return_value=RETURNED)
    Schedule.objects.filter(pk=made.schedule).update(args=ARGS, kwargs=KWARGS)
    return made


def page_text(client, user: User | None, url: str) -> str:
    client.force_login(user)
    response = client.get(url, follow=True)
    assert response.status_code == 200, url
    return response.content.decode()


@pytest.mark.parametrize("role", ["viewer", "+view_run_arguments", "superuser"])
def test_no_page_shows_a_masked_value_to_anyone(client, users, world, role):
    for page in PAGES:
        if not allowed(role, page.rule):
            continue
        text = page_text(client, users[role], page.url(world))
        assert [secret for secret in SECRETS if secret in text] == [], page.label


def test_without_the_permission_no_argument_is_shown(client, users, world):
    viewer = users["viewer"]
    for url in (f"{RUNS}{world.failed}/change/", f"{SCHEDULES}{world.schedule}/change/"):
        text = page_text(client, viewer, url)
        assert [value for value in (*PLAIN, "r-ok", MASK) if value in text] == [], url
        assert "keyword arguments" not in text


@pytest.mark.parametrize("role", ["+view_run_arguments", "superuser"])
def test_with_it_the_rest_is_shown_and_the_masked_keys_masked(client, users, world, role):
    run_page = page_text(client, users[role], f"{RUNS}{world.failed}/change/")
    assert all(value in run_page for value in (*PLAIN, "r-ok"))
    # password, Token, API_KEY and secret in the arguments, authorization in the result.
    assert run_page.count(MASK) == 5
    schedule_page = page_text(client, users[role], f"{SCHEDULES}{world.schedule}/change/")
    assert all(value in schedule_page for value in PLAIN) and MASK in schedule_page


def test_the_hook_and_the_setting_decide_what_is_masked(client, users, world):
    superuser = users["superuser"]
    with override_settings(
        TASKMILL_ADMIN_MASKED_KEYS=("to",), TASKMILL_ADMIN_MASK=f"{__name__}.hide_plain_arg"
    ):
        run_page = page_text(client, superuser, f"{RUNS}{world.failed}/change/")
        schedule_page = page_text(
            client, users["+view_run_arguments"], f"{SCHEDULES}{world.schedule}/change/"
        )
    for text in (run_page, schedule_page):
        assert "a@b.c" not in text and "plain-arg" not in text  # by the setting, by the hook
        assert "hunter2" in text  # no longer a masked key


def hide_plain_arg(obj, args, kwargs):
    return [MASK if arg == "plain-arg" else arg for arg in args], kwargs


def test_a_run_enqueued_from_the_form_is_shown_masked(client, users, world):
    client.force_login(users["superuser"])
    response = client.post(
        f"{RUNS}enqueue/",
        {"task_path": "tests.testapp.tasks.unique_job", "args": '["n"]',
         "kwargs": '{"token": "fresh-t0k3n", "note": "visible"}'},
        follow=True,
    )  # fmt: skip
    text = response.content.decode()
    assert "Enqueued run" in text and "visible" in text and "fresh-t0k3n" not in text


def found(client, user: User, term: str, run_id: int) -> bool:
    client.force_login(user)
    return f">{run_id}<" in client.get(RUNS, {"q": term}).content.decode()


def test_a_search_never_finds_a_run_by_what_its_user_may_not_see(client, users, world):
    with_arguments, viewer = users["+view_run_arguments"], users["viewer"]
    assert found(client, with_arguments, "to=a@b.c", world.failed)
    assert not found(client, viewer, "to=a@b.c", world.failed)
    # Masked values are not confirmed by guessing them, however the lookup is spelled.
    for guess in (
        "password=hunter2",
        "password__startswith=hun",
        "nested__Token=t0k3n",
        'nested={"Token": "t0k3n", "items": [{"API_KEY": "k3y-1"}, "plain-item"]}',
    ):
        assert not found(client, users["superuser"], guess, world.failed), guess
    # Nor by filtering the list on the JSON fields through the query string.
    client.force_login(viewer)
    for field, lookup in (("kwargs", "password"), ("kwargs", "to"), ("args", "1"),
                          ("return_value", "result"), ("errors", "0")):  # fmt: skip
        response = client.get(RUNS, {f"{field}__{lookup}": "a@b.c"})
        assert response.status_code == 400  # Django's answer to a lookup it does not allow


def test_editing_a_schedule_keeps_a_masked_value_unless_it_is_replaced(client, users, world):
    client.force_login(users["superuser"])
    url = f"{SCHEDULES}{world.schedule}/change/"
    form = client.get(url).context["adminform"].form
    # The form as the browser would send it back, one value changed.
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    assert "hunter2" not in data["kwargs"] and MASK in data["kwargs"]
    data["kwargs"] = data["kwargs"].replace('"a@b.c"', '"new@b.c"')
    data["depends_on"] = []
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = Schedule.objects.get(pk=world.schedule)
    assert schedule.kwargs == {**KWARGS, "to": "new@b.c"}  # the secrets kept
    assert schedule.args == ARGS
    data["kwargs"] = json.dumps({**KWARGS, "password": "new-pw"})
    client.post(url, data)
    assert Schedule.objects.get(pk=world.schedule).kwargs["password"] == "new-pw"
