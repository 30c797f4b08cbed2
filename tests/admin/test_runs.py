"""The runs pages: the list (fast, readable) and a run's own page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from taskmill.models import Run
from tests.admin.test_dashboard import unbounded_run_counts
from tests.testapp import tasks

pytestmark = pytest.mark.django_db
# Tests that run queued work with a real worker need committed rows: a real transaction each.
REAL_WORKER = pytest.mark.django_db(transaction=True)

LIST = "/admin/taskmill/run/"


@REAL_WORKER
def test_a_failed_runs_page_shows_each_attempt_readably_and_no_save(admin_client, run_worker):
    result = tasks.flaky.using(max_attempts=2).enqueue(5)  # fails both attempts
    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == "FAILED" and len(run.errors) == 2

    page = admin_client.get(f"{LIST}{run.pk}/change/").content.decode()
    # Each attempt: its exception's class and message, and a traceback as lines, unescaped.
    assert page.count("<strong>ConnectionError</strong>: attempt") == 2
    assert "attempt 1 failed" in page and "attempt 2 failed" in page
    assert re.search(r'<pre class="tm-traceback">Traceback \(most recent call last\):\n', page)
    assert "\\n" not in page.split("tm-errors", 1)[1].split("</ol>", 1)[0]
    # Times to the millisecond, a duration, and no way to edit what happened.
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", page)
    assert 'name="_save"' not in page and 'name="_continue"' not in page


@REAL_WORKER
def test_a_runs_page_shows_its_snoozes_only_when_it_snoozed(admin_client, run_worker):
    from tests.testapp import snooze_tasks

    snoozed = snooze_tasks.planned.using(max_snoozes=4).enqueue("SSO")  # snoozes twice
    plain = snooze_tasks.planned.enqueue("O")
    run_worker("--burst", "--no-scheduler")
    assert Run.objects.get(pk=int(snoozed.id)).snoozes == 2

    page = admin_client.get(f"{LIST}{snoozed.id}/change/").content.decode()
    assert re.search(r"<label>Snoozes:</label>\s*<div class=\"readonly\">2 of at most 4:", page)
    assert "attempts that ended in a snooze, using none of max_attempts" in page
    page = admin_client.get(f"{LIST}{plain.id}/change/").content.decode()
    assert "Snoozes:" not in page and "field-snoozed" not in page


@REAL_WORKER
def test_the_list_shows_seconds_and_durations_and_never_counts_the_table(admin_client, run_worker):
    results = tasks.add.enqueue_many([((i, 1), {}) for i in range(5)])
    run_worker("--burst", "--no-scheduler")
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(LIST).content.decode()
    assert unbounded_run_counts(queries.captured_queries) == []
    # To the second, the whole time (to the millisecond, with its zone) in the title.
    shown = r'title="[\d-]+ \d\d:\d\d:\d\d\.\d{3} UTC">[\d-]* ?\d\d:\d\d:\d\d</time>'
    assert re.search(shown, page)
    assert re.search(r'class="field-duration">\d+ ms<', page)
    assert all(f">{result.id}<" in page for result in results)

    # Filters that find their choices without scanning runs, and a search by id.
    filtered = admin_client.get(
        LIST, {"task_path": "tests.testapp.tasks.add", "enqueued_within": "1h"}
    )
    assert filtered.status_code == 200 and f">{results[0].id}<" in filtered.content.decode()
    other = admin_client.get(LIST, {"queue_name": "emails"}).content.decode()
    assert f">{results[0].id}<" not in other
    found = admin_client.get(LIST, {"q": results[2].id}).content.decode()
    assert f">{results[2].id}<" in found


def test_search_inside_arguments_and_masking_follow_the_permission(client):
    wanted = tasks.send_email.enqueue(to="x@y.z").id
    secret = Run.objects.create(
        task_path="tests.testapp.tasks.send_email", backend="default", queue_name="emails",
        args=[], kwargs={"to": "a@b.c", "password": "hunter2", "nested": {"Token": "t0k3n"}},
        enqueued_at=timezone.now(), available_at=timezone.now(),
    )  # fmt: skip
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)
    page = client.get(f"{LIST}{secret.pk}/change/").content.decode()
    assert "a@b.c" not in page and "hunter2" not in page and "keyword arguments" not in page
    assert f">{secret.pk}<" not in client.get(LIST, {"q": "to=a@b.c"}).content.decode()

    viewer.user_permissions.add(Permission.objects.get(codename="view_run_arguments"))
    page = client.get(f"{LIST}{secret.pk}/change/").content.decode()
    assert "a@b.c" in page and "hunter2" not in page and "t0k3n" not in page
    assert page.count("********") == 2
    found = client.get(LIST, {"q": "to=a@b.c"}).content.decode()
    assert f">{secret.pk}<" in found and f">{wanted}<" not in found
    assert f">{secret.pk}<" not in client.get(LIST, {"q": "to=z@b.c"}).content.decode()


def test_past_the_cap_the_list_says_more_than_and_counts_no_further(admin_client, monkeypatch):
    from taskmill.admin import paging

    monkeypatch.setattr(paging, "COUNT_CAP", 3)
    tasks.add.enqueue_many([((n, n), {}) for n in range(5)])
    page = admin_client.get(LIST).content.decode()
    assert "more than 3 task runs" in page and "5 task runs" not in page
    # Under the cap the list counts exactly.
    page = admin_client.get(f"{LIST}?q=add&status__exact=SUCCESSFUL").content.decode()
    assert "0 task runs" in page


def test_an_argument_search_counts_no_further_than_the_next_page(admin_client, monkeypatch):
    from taskmill.admin.runs import RunAdmin

    monkeypatch.setattr(RunAdmin, "list_per_page", 2)
    results = [tasks.send_email.enqueue(to="x@y.z") for _ in range(5)]
    tasks.send_email.enqueue(to="other@y.z")
    first = admin_client.get(LIST, {"q": "to=x@y.z"}).content.decode()
    assert "more than 2 task runs" in first
    assert listed(first) == [int(results[4].id), int(results[3].id)]
    last = admin_client.get(LIST, {"q": "to=x@y.z", "p": 3}).content.decode()
    assert "5 task runs" in last and listed(last) == [int(results[0].id)]


def listed(page: str) -> list[int]:
    """The run ids of a list page, in order (its rows' selection checkboxes)."""
    return [int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', page)]


def test_a_number_finds_its_id_anywhere_and_positional_arguments_among_the_newest_runs(
    admin_client, monkeypatch
):
    from taskmill.admin import runs

    monkeypatch.setattr(runs, "NUMBER_SEARCH_WINDOW", 3)
    # Numbers no run of the test database has as its id.
    old = tasks.add.enqueue(9_000_777, 1)
    newer = [tasks.add.enqueue(9_100_000 + n, 9_000_777) for n in range(3)]
    number = int(old.id)
    # The oldest run holds the number but lies outside the newest three: args.N=value finds it.
    assert listed(admin_client.get(LIST, {"q": "9000777"}).content.decode()) == [
        int(result.id) for result in reversed(newer)
    ]
    assert number in listed(admin_client.get(LIST, {"q": "args.0=9000777"}).content.decode())
    # An id is found however old its run.
    assert listed(admin_client.get(LIST, {"q": str(number)}).content.decode()) == [number]


def test_a_positional_argument_is_found_by_its_index(client, settings):
    # Wagtail passes ("home", "articlepage", "5"): an id as a string, third positional. A
    # number no run of the test database has as its id.
    page = Run.objects.create(
        task_path="tests.testapp.tasks.add", backend="default", queue_name="default",
        args=["home", "articlepage", "90210"], kwargs={},
        enqueued_at=timezone.now(), available_at=timezone.now(),
    )  # fmt: skip
    other = Run.objects.create(
        task_path="tests.testapp.tasks.add", backend="default", queue_name="default",
        args=["home", "articlepage", 90210, "x"], kwargs={},
        enqueued_at=timezone.now(), available_at=timezone.now(),
    )  # fmt: skip
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    # cancel_run: the list's selection boxes, which `listed` reads.
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "cancel_run"]))
    client.force_login(viewer)
    # Without the permission to see arguments, nothing is found by them; a number is an id.
    assert listed(client.get(LIST, {"q": "args.2=90210"}).content.decode()) == []
    assert listed(client.get(LIST, {"q": "90210"}).content.decode()) == []
    assert listed(client.get(LIST, {"q": str(page.pk)}).content.decode()) == [page.pk]

    viewer.user_permissions.add(Permission.objects.get(codename="view_run_arguments"))
    # 90210 finds the number and the text (the index counts from 0); "90210" the text (MariaDB,
    # whose JSON comparisons are loose, finds the number too).
    assert listed(client.get(LIST, {"q": "args.2=90210"}).content.decode()) == [other.pk, page.pk]
    assert page.pk in listed(client.get(LIST, {"q": 'args.2="90210"'}).content.decode())
    assert listed(client.get(LIST, {"q": "args.0=home"}).content.decode()) == [other.pk, page.pk]
    assert listed(client.get(LIST, {"q": "args.3=x"}).content.decode()) == [other.pk]
    assert listed(client.get(LIST, {"q": "args.1=90210"}).content.decode()) == []
    # A bare number: the run with that id, or with that positional argument.
    assert listed(client.get(LIST, {"q": "90210"}).content.decode()) == [other.pk, page.pk]
    assert listed(client.get(LIST, {"q": str(page.pk)}).content.decode()) == [page.pk]
    assert listed(client.get(LIST, {"q": "90211"}).content.decode()) == []

    # A project's own masking hook may hide any positional argument: no search by them then.
    settings.TASKMILL_ADMIN_MASK = lambda run, args, kwargs: (["***"] * len(args), kwargs)
    assert listed(client.get(LIST, {"q": "args.2=90210"}).content.decode()) == []
    assert listed(client.get(LIST, {"q": "90210"}).content.decode()) == []
