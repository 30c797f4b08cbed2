"""What each page of the control room asks of the database: never a count of the whole runs
table, no facet counts, and as many queries for 50 rows as for 5 (no query per row).

The runs table may hold millions of finished runs. Two counts over it are allowed, both
bounded by something other than its size: the list's capped paginator (COUNT over a
subquery with LIMIT 1001) and the overview's counts of active runs through the claim's
partial indexes (WHERE status = 'READY' | 'RUNNING' | 'WAITING').
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskmill.admin.paging import COUNT_CAP
from taskmill.models import Run, RunDependency, Schedule, Worker

from .control_room import PAGES, make_batch, make_run, make_schedule, make_worker, make_world

pytestmark = pytest.mark.django_db

FROM_RUNS = re.compile(r"FROM\s+[`\"]?taskmill_run[`\"]?(?!\w)", re.I)
CAPPED = re.compile(rf"LIMIT\s+{COUNT_CAP + 1}\b", re.I)
ACTIVE_ONLY = re.compile(r"FROM\s+taskmill_run\s+WHERE\s+status\s*=\s*'(READY|RUNNING|WAITING)'")


def unbounded_run_counts(queries: list[dict]) -> list[str]:
    """Statements that COUNT rows of the runs table and are bounded neither by the cap nor
    by counting active runs only."""
    return [
        query["sql"]
        for query in queries
        if re.search(r"\bCOUNT\s*\(", query["sql"], re.I)
        and FROM_RUNS.search(query["sql"])
        and not CAPPED.search(query["sql"])
        and not ACTIVE_ONLY.search(query["sql"])
    ]


@pytest.fixture
def superuser(client) -> User:
    user = User.objects.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


def queries_of(client, url: str) -> list[dict]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code in (200, 302), url
    return captured.captured_queries


def test_the_checker_tells_the_shapes_apart():
    capped = f'SELECT COUNT(*) FROM (SELECT 1 AS "a" FROM "taskmill_run" LIMIT {COUNT_CAP + 1})'
    active = "SELECT queue_name, COUNT(*) FROM taskmill_run WHERE status = 'RUNNING' GROUP BY 1"
    whole = 'SELECT COUNT(*) AS "__count" FROM "taskmill_run"'
    filtered = "SELECT COUNT(*) FROM `taskmill_run` WHERE `taskmill_run`.`status` = 'FAILED'"
    facets = (
        'SELECT COUNT("taskmill_run"."id") FILTER (WHERE "status" = \'READY\') FROM "taskmill_run"'
    )
    stats = 'SELECT COUNT(*) FROM "taskmill_run_stats"'
    found = unbounded_run_counts(
        [{"sql": sql} for sql in (capped, active, whole, filtered, facets, stats)]
    )
    assert found == [whole, filtered, facets]


@pytest.mark.parametrize(
    "page", [page for page in PAGES if page.rule != "nobody"], ids=lambda page: page.label
)
def test_no_page_counts_the_runs_table(client, superuser, page):
    world = make_world()
    for _ in range(5):
        make_run("SUCCESSFUL")
    queries = queries_of(client, page.url(world))
    assert unbounded_run_counts(queries) == []


def test_asking_for_facets_adds_no_count(client, superuser):
    make_world()
    plain = queries_of(client, "/admin/taskmill/run/")
    faceted = queries_of(client, "/admin/taskmill/run/?_facets=True")
    assert len(faceted) == len(plain)


def _runs(count: int) -> None:
    for index in range(count):
        make_run(("SUCCESSFUL", "FAILED", "READY")[index % 3], queue_name=f"q{index % 4}")


def _schedules(count: int) -> None:
    start = Schedule.objects.count()
    for index in range(start, start + count):
        make_schedule(f"s{index}")


def _workers(count: int) -> None:
    start = Worker.objects.count()
    for index in range(start, start + count):
        make_worker(f"w{index}")


def _batches(count: int) -> None:
    for index in range(count):
        make_batch(f"b{index}", total=4, succeeded=index % 3, failed=1)


def _queues(count: int) -> None:
    start = Run.objects.count()
    for index in range(start, start + count):
        make_run(queue_name=f"queue{index}")  # each lists its queue


def _unknown_runs(count: int) -> None:
    for index in range(count):  # each marked "unknown task" in the list
        make_run(task_path=f"tests.forged.gone_{index % 7}")


GROWTH: dict[str, tuple[str, Callable[[int], None]]] = {
    "runs": ("/admin/taskmill/run/", _runs),
    "runs of unknown tasks": ("/admin/taskmill/run/?task_known=unknown", _unknown_runs),
    "dashboard, unknown tasks": ("/admin/taskmill/dashboard/", _unknown_runs),
    "runs, filtered": ("/admin/taskmill/run/?status=FAILED&enqueued_within=1h", _runs),
    "runs, searched": ("/admin/taskmill/run/?q=tasks.add", _runs),
    "dashboard": ("/admin/taskmill/dashboard/", _runs),
    "schedules": ("/admin/taskmill/schedule/", _schedules),
    "workers": ("/admin/taskmill/worker/", _workers),
    "queues": ("/admin/taskmill/queue/", _queues),
    "batches": ("/admin/taskmill/batch/", _batches),
    "runs of a batch": ("/admin/taskmill/run/?batch=1", _runs),
}


@pytest.mark.parametrize("name", GROWTH)
def test_queries_do_not_grow_with_the_rows_shown(client, superuser, name):
    url, add_rows = GROWTH[name]
    add_rows(5)
    client.get(url)  # warm: what a first request loads once (content types, the session)
    few = queries_of(client, url)
    add_rows(45)
    many = queries_of(client, url)
    assert len(many) == len(few), "\n".join(query["sql"] for query in many)


def test_a_run_page_and_a_schedule_page_cost_the_same_with_more_links(client, superuser):
    world = make_world()
    schedule_url = f"/admin/taskmill/schedule/{world.schedule}/change/"
    run_url = f"/admin/taskmill/run/{world.failed}/change/"
    client.get(run_url)
    before = (len(queries_of(client, run_url)), len(queries_of(client, schedule_url)))
    for _ in range(8):
        later = make_run("READY", schedule_id=world.schedule)
        RunDependency.objects.create(run=later, depends_on_id=world.failed)
    after = (len(queries_of(client, run_url)), len(queries_of(client, schedule_url)))
    assert after == before


def test_the_dashboard_counts_active_runs_once(client, superuser):
    make_world()
    queries = queries_of(client, "/admin/taskmill/dashboard/")
    per_queue = [q for q in queries if ACTIVE_ONLY.search(q["sql"]) and "BY queue_name" in q["sql"]]
    assert len(per_queue) == 5  # due, deferred, waiting, running, held: the overview, once
    page = client.get("/admin/taskmill/dashboard/").content.decode()
    assert "<option>default</option>" in page  # the queue filter still offers the queues
