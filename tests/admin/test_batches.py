"""The batch pages: the list and a batch's page (progress, counts by state, its members in the
runs list, its callbacks' runs), the runs list filtered by batch, a run's link to its batch."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.utils import timezone

import taskmill
from taskmill.models import Batch, Run
from tests.testapp import batch_tasks, tasks

from .control_room import make_batch, make_run

pytestmark = pytest.mark.django_db
REAL_WORKER = pytest.mark.django_db(transaction=True)

BATCHES = "/admin/taskmill/batch/"
RUNS = "/admin/taskmill/run/"


@REAL_WORKER
def test_a_finished_batchs_page_shows_its_progress_members_and_callbacks(admin_client, run_worker):
    callbacks = {"on_finish": batch_tasks.on_finish, "on_failure": batch_tasks.on_failure}
    with taskmill.batch(**callbacks, description="import 12-07") as batch:
        ok = tasks.add.enqueue_many([((i, 1), {}) for i in range(3)])
        failed = tasks.fail.enqueue("bad row")
    other = tasks.add.enqueue(7, 7)  # in no batch
    run_worker("--burst", "--no-scheduler")
    batch.refresh()
    assert batch.finished_at is not None and len(batch.callback_runs) == 2

    listed = admin_client.get(BATCHES).content.decode()
    assert "import 12-07" in listed and 'class="tm-batch-bar"' in listed
    assert 'title="3 succeeded"' in listed and 'title="1 failed"' in listed

    page = admin_client.get(f"{BATCHES}{batch.pk}/change/").content.decode()
    assert "<li>succeeded: <strong>3</strong></li>" in page
    assert "<li>failed: <strong>1</strong></li>" in page
    assert "<li>pending (waiting, ready, running or retrying): <strong>0</strong></li>" in page
    assert f'href="{RUNS}?batch={batch.pk}"' in page
    for run_id in batch.callback_runs:
        assert f'href="{RUNS}{run_id}/change/"' in page
    assert "on_success" not in page  # none was given
    assert 'name="_save"' not in page and "deletelink" not in page

    members = admin_client.get(RUNS, {"batch": batch.pk}).content.decode()
    for result in (*ok, failed):
        assert f">{result.id}<" in members
    assert f">{other.id}<" not in members
    assert f"#{batch.pk} import 12-07" in members  # the filter shows which batch

    run_page = admin_client.get(f"{RUNS}{failed.id}/change/").content.decode()
    assert re.search(rf'<a href="{BATCHES}{batch.pk}/change/" class="tm-run-batch">', run_page)
    lone = admin_client.get(f"{RUNS}{other.id}/change/").content.decode()
    assert "tm-run-batch" not in lone


def test_an_open_batch_says_what_it_waits_for(admin_client):
    batch = make_batch("still enqueueing", sealed=False, total=0)
    sealed = make_batch("open", total=4, succeeded=1, cancelled=1)
    page = admin_client.get(f"{BATCHES}{batch.pk}/change/").content.decode()
    assert "open, still enqueueing" in page
    page = admin_client.get(f"{BATCHES}{sealed.pk}/change/").content.decode()
    assert "<li>pending (waiting, ready, running or retrying): <strong>2</strong></li>" in page
    open_only = admin_client.get(BATCHES, {"state": "open"}).content.decode()
    assert "still enqueueing" in open_only
    finished_only = admin_client.get(BATCHES, {"state": "finished"}).content.decode()
    assert "still enqueueing" not in finished_only
    assert f">{sealed.pk}<" in admin_client.get(BATCHES, {"q": str(sealed.pk)}).content.decode()


def test_a_batch_filter_that_is_no_id_is_refused_and_a_gone_batch_lists_nothing(admin_client):
    run = make_run()
    response = admin_client.get(RUNS, {"batch": "x"})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
    # No batch at all, and one that no longer exists: its members are none, not every run.
    page = admin_client.get(RUNS, {"batch": "12345"}).content.decode()
    assert f">{run.pk}<" not in page and "#12345 (no such batch)" in page


def test_who_may_view_runs_may_view_batches(client):
    batch = make_batch()
    member = make_run(batch=batch)
    staff = User.objects.create(username="staff", is_staff=True)
    client.force_login(staff)
    assert client.get(BATCHES).status_code == 403
    assert client.get(f"{BATCHES}{batch.pk}/change/").status_code == 403
    viewer = User.objects.create(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)
    assert client.get(f"{BATCHES}{batch.pk}/change/").status_code == 200
    members = client.get(RUNS, {"batch": batch.pk}).content.decode()
    assert f">{member.pk}<" in members
    # Viewing a batch's own permission alone opens nothing: the runs' rule is the rule.
    batch_viewer = User.objects.create(username="batch viewer", is_staff=True)
    batch_viewer.user_permissions.add(Permission.objects.get(codename="view_batch"))
    client.force_login(batch_viewer)
    assert client.get(f"{BATCHES}{batch.pk}/change/").status_code == 403
    assert Run.objects.filter(batch=batch).count() == 1


def test_a_batch_its_opener_left_unsealed_is_flagged_and_sealed_by_the_action(client):
    long_ago = timezone.now() - timedelta(hours=2)
    abandoned = make_batch("abandoned", sealed=False, total=0, succeeded=1)
    Batch.objects.filter(pk=abandoned.pk).update(created_at=long_ago)
    ended = make_run(batch=abandoned, status="SUCCESSFUL")
    fresh = make_batch("still enqueueing", sealed=False, total=0)
    viewer = User.objects.create(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)

    attention = client.get("/admin/taskmill/dashboard/", {"fragment": "attention"}).content
    assert "Batches never sealed" in attention.decode() and "abandoned" in attention.decode()
    assert "still enqueueing" not in attention.decode()
    page = client.get(f"{BATCHES}{abandoned.pk}/change/").content.decode()
    assert "did the code that opened it stop?" in page
    # The action needs the permission to enqueue runs: it leads to its callbacks' runs.
    seal = {"action": "seal_batches", "_selected_action": [abandoned.pk, fresh.pk]}
    client.post(BATCHES, seal)
    assert not Batch.objects.get(pk=abandoned.pk).sealed
    viewer.user_permissions.add(Permission.objects.get(codename="enqueue_run"))
    client.force_login(User.objects.get(pk=viewer.pk))
    response = client.post(BATCHES, seal, follow=True)
    assert "2 batch(es) sealed" in response.content.decode()
    sealed = Batch.objects.get(pk=abandoned.pk)
    # Its one member had ended (and was counted): sealed, it finished at once.
    assert (sealed.sealed, sealed.total, sealed.finished_at is not None) == (True, 1, True)
    assert Run.objects.get(pk=ended.pk).batch_id == abandoned.pk
    entry = LogEntry.objects.get(object_id=str(abandoned.pk))
    assert entry.get_change_message() == "Sealed from the admin"
    again = client.post(BATCHES, seal, follow=True).content.decode()
    assert "0 batch(es) sealed" in again and "2 already sealed" in again
