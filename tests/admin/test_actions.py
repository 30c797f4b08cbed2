"""What an operator does from the admin: each action on selected rows, on every row matching
a filter, and from a run's own page; who may do it; and the admin's log of it."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from taskmill.models import Queue, Run, Worker
from tests.testapp import tasks

pytestmark = pytest.mark.django_db
# Tests that run queued work with a real worker need committed rows: a real transaction each.
REAL_WORKER = pytest.mark.django_db(transaction=True)

LIST = "/admin/taskmill/run/"


def staff(client, *codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="taskmill", codename__in=codenames)
    )
    client.force_login(user)
    return user


def act(client, action: str, ids: list, **extra):
    data = {"action": action, "_selected_action": [str(pk) for pk in ids], **extra}
    return client.post(LIST, data, follow=True)


@REAL_WORKER
def test_retry_and_cancel_follow_the_state_and_are_logged(client, run_worker):
    failed = [tasks.fail.enqueue(f"f{i}") for i in range(3)]
    run_worker("--burst", "--no-scheduler")
    ready = [tasks.noop.enqueue() for _ in range(2)]
    user = staff(client, "view_run", "retry_run", "cancel_run")
    ids = [int(r.id) for r in failed + ready]

    page = act(client, "retry_runs", ids).content.decode()
    assert "Retried 3 run(s)." in page
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"READY"}
    page = act(client, "cancel_runs", ids).content.decode()
    assert "Cancelled or asked to stop 5 run(s)." in page
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"CANCELLED"}
    logged = LogEntry.objects.filter(user=user).values_list("object_id", "change_message")
    assert sorted(int(pk) for pk, message in logged if message.startswith("Retried")) == sorted(
        int(r.id) for r in failed
    )
    assert len([1 for _pk, message in logged if message.startswith("Cancelled")]) == 5


def test_select_all_matching_the_filter_works_in_batches(client):
    import taskmill.admin.run_actions as run_actions

    tasks.noop.enqueue_many([((), {})] * 12)
    tasks.send_email.enqueue("x")  # another task: not matched by the filter
    staff(client, "view_run", "cancel_run")
    original, run_actions.BATCH = run_actions.BATCH, 5
    try:
        some = list(Run.objects.filter(task_path="tests.testapp.tasks.noop")[:1])
        response = client.post(
            f"{LIST}?task_path=tests.testapp.tasks.noop",
            {"action": "cancel_runs", "select_across": "1", "_selected_action": [some[0].pk]},
            follow=True,
        )
    finally:
        run_actions.BATCH = original
    assert "Cancelled or asked to stop 12 run(s)." in response.content.decode()
    assert Run.objects.filter(status="CANCELLED").count() == 12
    assert Run.objects.get(task_path="tests.testapp.tasks.send_email").status == "READY"


@REAL_WORKER
def test_view_permission_alone_offers_no_action_and_refuses_one(client, run_worker):
    result = tasks.fail.enqueue("x")
    run_worker("--burst", "--no-scheduler")
    staff(client, "view_run")
    page = client.get(LIST).content.decode()
    assert "retry_runs" not in page and "cancel_runs" not in page and "delete_finished" not in page
    detail = client.get(f"{LIST}{result.id}/change/").content.decode()
    assert "tm-act-retry" not in detail
    refused = client.post(f"{LIST}{result.id}/act/retry/")
    assert refused.status_code == 403
    assert Run.objects.get(pk=int(result.id)).status == "FAILED"


@REAL_WORKER
def test_a_runs_page_offers_the_buttons_its_state_allows(client, run_worker):
    result = tasks.fail.enqueue("x")
    run_worker("--burst", "--no-scheduler")
    staff(client, "view_run", "retry_run", "cancel_run", "enqueue_run")
    page = client.get(f"{LIST}{result.id}/change/").content.decode()
    assert "tm-act-retry" in page and "tm-act-copy" in page and "tm-act-cancel" not in page
    client.post(f"{LIST}{result.id}/act/retry/", follow=True)
    assert Run.objects.get(pk=int(result.id)).status == "READY"
    page = client.get(f"{LIST}{result.id}/change/").content.decode()
    assert "tm-act-cancel" in page and "tm-act-retry" not in page
    client.post(f"{LIST}{result.id}/act/copy/")
    copy = Run.objects.exclude(pk=int(result.id)).get()
    assert (copy.task_path, copy.args, copy.status) == ("tests.testapp.tasks.fail", ["x"], "READY")
    assert client.get(f"{LIST}{result.id}/act/retry/").status_code == 405


@REAL_WORKER
def test_delete_removes_finished_runs_only(client, run_worker):
    done = tasks.add.enqueue(1, 2)
    run_worker("--burst", "--no-scheduler")
    waiting = tasks.noop.enqueue()
    staff(client, "view_run", "delete_run")
    page = act(client, "delete_finished", [done.id, waiting.id]).content.decode()
    assert "Deleted 1 finished run(s)." in page
    assert list(Run.objects.values_list("pk", flat=True)) == [int(waiting.id)]


def test_queues_are_listed_with_their_work_and_paused_by_permission(client):
    tasks.send_email.enqueue("a")
    tasks.noop.enqueue()
    staff(client, "view_queue", "pause_queue")
    page = client.get("/admin/taskmill/queue/").content.decode()
    assert "emails" in page and "default" in page
    client.post(
        "/admin/taskmill/queue/", {"action": "pause", "_selected_action": ["emails"]}, follow=True
    )
    assert Queue.objects.get(pk="emails").paused
    assert LogEntry.objects.filter(object_id="emails", change_message="Paused").exists()


def test_workers_are_shut_down_only_with_the_permission(client):
    Worker.objects.create(
        id="w-1", host="h", pid=1, concurrency=2, started_at=timezone.now(),
        last_heartbeat_at=timezone.now(), state="RUNNING",
    )  # fmt: skip
    staff(client, "view_worker")
    page = client.get("/admin/taskmill/worker/").content.decode()
    assert "shut_down" not in page and "0/2" in page
    client.post("/admin/taskmill/worker/", {"action": "shut_down", "_selected_action": ["w-1"]})
    assert not Worker.objects.get(pk="w-1").shutdown_requested
    Permission.objects.get(codename="shutdown_worker").user_set.add(User.objects.get())
    client.post("/admin/taskmill/worker/", {"action": "shut_down", "_selected_action": ["w-1"]})
    assert Worker.objects.get(pk="w-1").shutdown_requested
