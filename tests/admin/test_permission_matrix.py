"""Who may open each page of the control room and do each of its actions, as a table.

Every page and action is in tests/admin/control_room.py with its rule; each is tried here
by every role (anonymous, superuser, staff with no permission, a viewer of everything, a
viewer with one more permission, and taskmill's permissions held alone). An action is
offered exactly to those it lets act; refused, it changes nothing; done, it is in the admin's
log under the user who did it. A URL the admin gains without a rule here fails the suite.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import transaction

from taskmill.models import Queue, Schedule
from tests.conftest import only_on

from .control_room import (
    ACTIONS,
    OFFERED_ON,
    PAGES,
    ROLES,
    Action,
    Page,
    World,
    admin_routes,
    allowed,
    make_run,
    make_world,
)

# About 1,900 requests through the admin's permission checks, which no database changes:
# run once, on SQLite, by the main leg (the actions' effects are tested on every database in
# test_actions, test_arguments and test_page_queries).
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    only_on("sqlite", "the admin's permission logic does not depend on the database"),
]


@pytest.fixture
def world() -> World:
    return make_world()


def login(client, user: User | None) -> None:
    client.logout()
    if user is not None:
        client.force_login(user)


def test_every_url_of_the_control_room_has_a_rule():
    ruled = {page.route for page in PAGES} | {action.route for action in ACTIONS}
    assert admin_routes() - ruled == set(), "a page without a rule in control_room.py"
    assert ruled - admin_routes() == set(), "a rule for a page that no longer exists"


def mismatches(seen: dict, expected: dict) -> dict[str, str]:
    """The roles for which what happened is not what the rule says, readably."""
    return {
        role: f"got {seen[role]}, expected {expected[role]}"
        for role in expected
        if seen[role] != expected[role]
    }


def expected_status(role: str, page: Page) -> int:
    if role == "anonymous":
        return 302  # to the login page
    return page.ok if allowed(role, page.rule) else 403


# A page with a query string (a filter, a search, a fragment) is the same view, behind the
# same check: tried by these roles only, to keep the suite quick.
VARIANT_ROLES = ("anonymous", "superuser", "staff", "viewer")


@pytest.mark.parametrize("page", PAGES, ids=[page.label for page in PAGES])
def test_who_may_open_each_page(client, users, world, page):
    url = page.url(world)
    roles = VARIANT_ROLES if "?" in url else tuple(ROLES)
    seen = {}
    for role in roles:
        login(client, users[role])
        response = client.get(url)
        seen[role] = response.status_code
        if role == "anonymous":
            assert response["Location"].startswith("/admin/login/"), response["Location"]
    assert mismatches(seen, {role: expected_status(role, page) for role in roles}) == {}


def _prepare(action: Action, world: World) -> None:
    if action.extra.get("paused"):
        Schedule.objects.filter(pk=world.schedule).update(paused=True)
    if action.extra.get("disabled"):
        Schedule.objects.filter(pk=world.schedule).update(enabled=False)
    if action.extra.get("queue_paused"):
        Queue.objects.filter(pk=world.queue).update(paused=True)


@pytest.mark.parametrize("action", ACTIONS, ids=[action.label for action in ACTIONS])
def test_who_may_do_each_action(client, users, world, action):
    """Each role tries it on the same rows, rolled back after each."""
    _prepare(action, world)
    done, logged = {}, {}
    for role in ROLES:
        user = users[role]
        with transaction.atomic():
            login(client, user)
            client.post(action.url(world), action.data(world))
            done[role] = action.done(world)
            logged[role] = LogEntry.objects.filter(user=user, **action.logged(world)).exists()
            transaction.set_rollback(True)
    may = {role: allowed(role, action.rule) for role in ROLES}
    assert mismatches(done, may) == {}
    assert mismatches(logged, may) == {}


@pytest.mark.parametrize("page", OFFERED_ON)
def test_each_action_is_offered_to_who_may_do_it(client, users, world, page):
    """On each page that offers actions, every role that may see the page is offered
    exactly the actions it may do (one look at the page per role)."""
    actions = [action for action in ACTIONS if action.offered and action.offered[0] == page]
    assert actions
    offered, expected, seeing = {}, {}, set()
    for role in ROLES:
        if users[role] is None:
            continue
        login(client, users[role])
        response = client.get(OFFERED_ON[page](world))
        if response.status_code != 200:
            continue
        seeing.add(role)
        text = response.content.decode()
        for action in actions:
            offered[role, action.label] = action.offered[1](world) in text
            expected[role, action.label] = allowed(role, action.rule)
    assert mismatches(offered, expected) == {}
    # And whoever may do one of them sees the page that offers it.
    assert {role for role in ROLES for action in actions if allowed(role, action.rule)} <= seeing


def test_a_refused_page_writes_nothing(client, users, world):
    make_run(queue_name="emails")  # a queue with work and no row yet
    for role in ("anonymous", "staff", "pause_queue alone"):
        login(client, users[role])
        assert client.get("/admin/taskmill/queue/").status_code in (302, 403)
        assert not Queue.objects.filter(pk="emails").exists(), role
    login(client, users["viewer"])
    client.get("/admin/taskmill/queue/")
    assert Queue.objects.filter(pk="emails").exists()  # listed, to be paused from there
