"""The dashboard: what it shows after real work, its fragments, who may see it, and that it
never counts the runs table."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import taskmill
from taskmill.models import Batch, Queue
from tests.testapp import tasks

pytestmark = pytest.mark.django_db
# Tests that run queued work with a real worker need committed rows: a real transaction each.
REAL_WORKER = pytest.mark.django_db(transaction=True)

URL = "/admin/taskmill/dashboard/"


def unbounded_run_counts(queries: list[dict]) -> list[str]:
    """Queries that COUNT rows of the runs table with neither a LIMIT nor a status filter:
    their cost grows with every finished run ever kept."""
    found = []
    for query in queries:
        sql = query["sql"]
        counts_runs = re.search(r"COUNT\(", sql, re.I) and "taskmill_run" in sql.replace(
            "taskmill_run_", ""
        )
        if counts_runs and not re.search(r"LIMIT|status", sql, re.I):
            found.append(sql)
    return found


@REAL_WORKER
def test_the_dashboard_shows_queues_charts_and_workers_after_real_work(admin_client, run_worker):
    tasks.add.enqueue_many([((i, i), {}) for i in range(20)])
    tasks.flaky.enqueue(1)
    tasks.fail.enqueue("on purpose")
    run_worker("--burst", "--no-scheduler")
    tasks.noop.using(queue_name="emails").enqueue()  # left ready
    Queue.objects.create(name="emails", paused=True)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Queues" in page and "emails" in page and "paused" in page
    # 20 adds + the flaky success + the failure, and the flaky's retried attempt.
    assert re.search(r"<strong>23</strong> attempts", page), page
    assert page.count('<rect class="tm-ok"') >= 1
    assert page.count('<rect class="tm-fail"') == 1
    assert '<polyline class="tm-p95"' in page
    assert "Workers: 0 alive" in page  # the burst worker has stopped
    assert unbounded_run_counts(queries.captured_queries) == []

    for fragment in ("queues", "charts", "batches", "workers", "attention"):
        part = admin_client.get(URL, {"fragment": fragment, "window": "day"})
        assert part.status_code == 200
        assert "<html" not in part.content.decode()
    week = admin_client.get(URL, {"window": "week", "queue": "default"}).content.decode()
    assert re.search(r"<strong>23</strong> attempts", week)
    other = admin_client.get(URL, {"queue": "emails"}).content.decode()
    assert re.search(r"<strong>0</strong> attempts", other)


def test_open_batches_and_those_just_finished_show_their_progress(admin_client):
    with taskmill.batch(description="import 12-07") as open_batch:
        tasks.add.enqueue_many([((i, i), {}) for i in range(4)])
    Batch.objects.filter(pk=open_batch.pk).update(succeeded=2, failed=1)
    long_ago = timezone.now() - timedelta(hours=1)
    done = Batch.objects.create(
        description="done a moment ago", backend="default", created_at=long_ago, sealed=True,
        total=2, succeeded=2, finished_at=timezone.now(),
    )  # fmt: skip
    Batch.objects.create(
        description="done long ago", backend="default", created_at=long_ago, sealed=True,
        total=1, succeeded=1, finished_at=long_ago,
    )  # fmt: skip

    part = admin_client.get(URL, {"fragment": "batches"}).content.decode()
    assert "Batches: 1 open" in part
    rows = re.findall(r'<tr data-tm-batch="(\d+)">(.*?)</tr>', part, re.S)
    assert [int(pk) for pk, _ in rows] == [open_batch.pk, done.pk]  # open first; recent only
    first, second = (row for _, row in rows)
    assert "import 12-07" in first and "3 of 4" in first and "open" in first
    assert first.count('class="tm-ok"') == 1 and first.count('class="tm-fail"') == 1
    assert "2 of 2" in second and "finished" in second
    assert f"/admin/taskmill/batch/{done.pk}/change/" in second


def test_only_who_may_view_runs_sees_the_dashboard(client):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_run"))
    assert client.get(URL).status_code == 200
    index = client.get("/admin/").content.decode()
    assert URL in index  # listed in the admin index


def test_the_breadcrumbs_are_in_this_djangos_own_markup(admin_client):
    # Django 6.1 styles ol.breadcrumbs, 6.0 and 5.2 div.breadcrumbs: the other sits unstyled.
    import django

    as_list = django.VERSION >= (6, 1)
    expected = '<ol class="breadcrumbs">' if as_list else '<div class="breadcrumbs">'
    for url in (URL, "/admin/taskmill/run/enqueue/"):
        page = admin_client.get(url).content.decode()
        assert page.count(expected) == 1, url
        assert page.count('class="breadcrumbs"') == 1, url  # and no second, older form
        assert 'href="/admin/">Home</a>' in page
