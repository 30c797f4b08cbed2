"""A run's metadata and progress in the control room: the run's page (the metadata as JSON,
masked, for who may see arguments; the progress bar for whoever may view runs, its message
for who may see arguments), running runs' progress in the list, and ``meta:key=value``."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskmill.models import Run, RunStatus
from tests.conftest import wait_until
from tests.testapp import metadata_tasks

from .control_room import make_run

pytestmark = pytest.mark.django_db
LIST = "/admin/taskmill/run/"

PROGRESS = {
    "done": 37,
    "total": 100,
    "message": "importing orders.csv",
    "at": "2026-12-07T10:00:00.250000+00:00",
}


def user_with(*codenames: str) -> User:
    user = User.objects.create(username="-".join(codenames), is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="taskmill", codename__in=codenames)
    )
    return user


def page(client, user: User, url: str, **query: str) -> str:
    client.force_login(user)
    response = client.get(url, query)
    assert response.status_code == 200, url
    return html.unescape(response.content.decode())  # the JSON's quotes as typed


def listed(text: str) -> list[int]:
    """The run ids of a list page (its rows link to their runs' pages)."""
    table = text.split('id="result_list"', 1)[-1]
    return [int(pk) for pk in re.findall(r'<th class="field-id"><a href="[^"]*/run/(\d+)/', table)]


def progress_cell(text: str, run_id: int) -> str:
    """The list's status cell in the row of ``run_id``, where a running run's progress is."""
    row = re.search(rf'<th class="field-id"><a href="[^"]*/run/{run_id}/.*?</tr>', text, re.S)
    row = row.group(0)
    return re.search(r'<td class="field-status">(.*?)</td>', row, re.S).group(1)


def test_the_run_page_shows_the_metadata_and_a_progress_bar_with_its_message(client):
    run = make_run(
        "RUNNING",
        metadata={"trace_id": "t-9", "password": "hunter2", "progress": PROGRESS},
        attempt=1,
    )
    text = page(client, user_with("view_run", "view_run_arguments"), f"{LIST}{run.pk}/change/")
    # The metadata, pretty JSON, with the masked keys masked.
    assert '<pre class="tm-json">' in text and '"trace_id": "t-9"' in text
    assert "hunter2" not in text and '"password": "********"' in text
    # A native bar with the report's figures, and the message.
    assert '<progress class="tm-progress" max="100" value="37">' in text
    assert "37/100 (37%)" in text
    assert '<span class="tm-progress-message">importing orders.csv</span>' in text
    assert "reported 2026-12-07 10:00:00.250 UTC" in text  # as the page's other times


def test_without_the_arguments_permission_the_bar_shows_and_the_metadata_does_not(client):
    run = make_run("RUNNING", metadata={"trace_id": "t-9", "progress": PROGRESS}, attempt=1)
    text = page(client, user_with("view_run"), f"{LIST}{run.pk}/change/")
    assert '<progress class="tm-progress" max="100" value="37">' in text and "37/100" in text
    assert "t-9" not in text and "importing orders.csv" not in text
    assert "tm-json" not in text.split('id="content-main"', 1)[1]


def test_a_run_without_a_report_has_no_bar_and_an_odd_one_breaks_nothing(client):
    user = user_with("view_run", "view_run_arguments")
    plain = make_run("SUCCESSFUL")
    odd = make_run("RUNNING", metadata={"progress": {"done": "many", "total": None}}, attempt=1)
    empty = make_run("RUNNING", metadata={"progress": {"done": 0, "total": 0}}, attempt=1)
    assert "tm-progress" not in page(client, user, f"{LIST}{plain.pk}/change/")
    text = page(client, user, f"{LIST}{odd.pk}/change/")
    assert "<progress" not in text and '"done": "many"' in text  # shown as the JSON it is
    text = page(client, user, f"{LIST}{empty.pk}/change/")
    assert '<progress class="tm-progress">0/0</progress>' in text  # no total: no percentage


def test_the_list_shows_the_progress_of_running_runs_only(client):
    running = make_run("RUNNING", metadata={"progress": PROGRESS}, attempt=1)
    finished = make_run("SUCCESSFUL", metadata={"progress": {**PROGRESS, "done": 100}})
    silent = make_run("RUNNING", attempt=1)
    user = user_with("view_run")
    client.force_login(user)
    with CaptureQueriesContext(connection) as few:
        client.get(LIST)
    for _ in range(20):
        make_run("RUNNING", metadata={"progress": PROGRESS}, attempt=1)
    with CaptureQueriesContext(connection) as many:
        text = client.get(LIST).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)  # read with the rows
    cell = progress_cell(text, running.pk)
    assert '<progress class="tm-progress" max="100" value="37">' in cell and "37/100" in cell
    assert "importing" not in cell  # the message is on the run's page
    assert "field-running_progress" in cell
    assert "<progress" not in progress_cell(text, finished.pk)
    assert "<progress" not in progress_cell(text, silent.pk)


@pytest.mark.django_db(transaction=True)
def test_a_running_tasks_progress_shows_in_the_list_and_on_its_page(admin_client, start_worker):
    result = metadata_tasks.progress_loop.enqueue(600, 0.01)  # six seconds of rows
    start_worker("--burst", "--no-scheduler")

    def reported() -> dict | None:
        run = Run.objects.get(pk=int(result.id))
        return run.status == RunStatus.RUNNING and (run.metadata or {}).get("progress")

    progress = wait_until(reported, message="the task to report progress")
    cell = progress_cell(admin_client.get(LIST).content.decode(), int(result.id))
    assert re.search(r'<progress class="tm-progress" max="600" value="\d+">', cell), cell
    text = admin_client.get(f"{LIST}{result.id}/change/").content.decode()
    assert re.search(r'<span class="tm-progress-message">row \d+ of 600</span>', text)
    assert progress["done"] >= 1


def test_meta_search_finds_runs_by_a_key_of_their_metadata(client):
    user = user_with("view_run", "view_run_arguments")
    number = make_run(metadata={"customer": 42, "source": {"file": "a.csv"}})
    text_id = make_run(metadata={"customer": "42"})
    other = make_run(metadata={"customer": 43, "contains": "x"})
    named_like_a_lookup = make_run(metadata={"contains": "y"})
    none = make_run()

    def found(term: str) -> list[int]:
        return sorted(listed(page(client, user, LIST, q=term)))

    assert found("meta:customer=42") == sorted([number.pk, text_id.pk])  # 42 and "42"
    # A quoted value is the text (MariaDB's key lookup compares texts: there 42 matches too).
    assert text_id.pk in found('meta:customer="42"')
    assert other.pk not in found('meta:customer="42"')
    assert found("meta:source.file=a.csv") == [number.pk]  # a path into the metadata
    assert found("meta:contains=y") == [named_like_a_lookup.pk]  # a key, not a lookup
    assert found("meta:customer=44") == []
    assert other.pk not in found("meta:customer=42") and none.pk not in found("meta:customer=42")


def test_meta_search_follows_the_arguments_permission_and_the_masks(client, settings):
    run = make_run(metadata={"customer": 42, "api_key": "k-1"})
    viewer = user_with("view_run")
    # Who may not see the metadata may not probe it either.
    assert listed(page(client, viewer, LIST, q="meta:customer=42")) == []
    seer = user_with("view_run", "view_run_arguments")
    assert listed(page(client, seer, LIST, q="meta:customer=42")) == [run.pk]
    settings.TASKMILL_ADMIN_MASKED_KEYS = ("api_key",)
    assert listed(page(client, seer, LIST, q="meta:api_key=k-1")) == []
