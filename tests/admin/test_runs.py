"""The runs pages: the list (fast, readable) and a run's own page."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskmill.models import Run
from tests.admin.test_dashboard import unbounded_run_counts
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/admin/taskmill/run/"


def test_a_failed_runs_page_shows_each_attempt_readably_and_no_save(admin_client, run_worker):
    result = tasks.flaky.using(max_attempts=2).enqueue(5)  # fails both attempts
    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == "FAILED" and len(run.errors) == 2

    page = admin_client.get(f"{LIST}{run.pk}/change/").content.decode()
    # Each attempt: its exception's class and message, and a traceback as lines, unescaped.
    assert page.count("<strong>ConnectionError</strong>: ConnectionError: attempt") == 2
    assert "attempt 1 failed" in page and "attempt 2 failed" in page
    assert re.search(r'<pre class="tm-traceback">Traceback \(most recent call last\):\n', page)
    assert "\\n" not in page.split("tm-errors", 1)[1].split("</ol>", 1)[0]
    # Times to the millisecond, a duration, and no way to edit what happened.
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", page)
    assert 'name="_save"' not in page and 'name="_continue"' not in page


def test_the_list_shows_seconds_and_durations_and_never_counts_the_table(admin_client, run_worker):
    results = tasks.add.enqueue_many([((i, 1), {}) for i in range(5)])
    run_worker("--burst", "--no-scheduler")
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(LIST).content.decode()
    assert unbounded_run_counts(queries.captured_queries) == []
    assert re.search(r"\d\d:\d\d:\d\d</td>", page)  # to the second
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
