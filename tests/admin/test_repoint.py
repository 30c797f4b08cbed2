"""Runs of unknown tasks in the control room: marked in the runs list and on a run's page,
filtered, counted on the dashboard; and the "Point at another task..." action, with and
without ``taskmill.repoint_run``, after which a real worker runs them."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from taskmill.models import Run, RunStatus
from tests.testapp import tasks

pytestmark = pytest.mark.django_db
REAL_WORKER = pytest.mark.django_db(transaction=True)

LIST = "/admin/taskmill/run/"
GONE = "tests.testapp.tasks.gone"  # no task there (any more)
TARGET = "tests.testapp.tasks.add"


def staff(client, *codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="taskmill", codename__in=codenames)
    )
    client.force_login(user)
    return user


def stored(task_path: str, status: str = RunStatus.READY, args=(1, 2)) -> Run:
    now = timezone.now()
    finished = status in (RunStatus.SUCCESSFUL, RunStatus.FAILED, RunStatus.CANCELLED)
    return Run.objects.create(
        task_path=task_path, backend="default", queue_name="default", args=list(args),
        kwargs={}, enqueued_at=now, available_at=now, status=status,
        finished_at=now if finished else None,
    )  # fmt: skip


def repoint(client, ids: list[int], *, url: str = LIST, **extra):
    data = {"action": "repoint_runs", "_selected_action": [str(pk) for pk in ids], **extra}
    return client.post(url, data, follow=True)


def test_unknown_tasks_are_marked_filtered_and_counted(client):
    gone = [stored(GONE), stored(GONE, RunStatus.FAILED)]
    known = stored(TARGET)
    staff(client, "view_run")

    page = client.get(LIST).content.decode()
    assert page.count("tm-unknown-task") == 2  # the two runs' rows, not the known one's
    listed = client.get(f"{LIST}?task_known=unknown").content.decode()
    assert f"{LIST}{gone[0].pk}/change/" in listed and f"{LIST}{known.pk}/change/" not in listed

    detail = client.get(f"{LIST}{gone[0].pk}/change/").content.decode()
    assert "No task is registered at this path, nor as an alias" in detail
    assert "tm-unknown-reason" not in client.get(f"{LIST}{known.pk}/change/").content.decode()

    dashboard = client.get("/admin/taskmill/dashboard/?fragment=attention").content.decode()
    assert "Runs of unknown tasks" in dashboard
    assert f"{LIST}?task_known=unknown" in dashboard
    assert ">2 runs</a> name a task path" in dashboard
    assert f"{GONE}</a>: 2 runs" in dashboard


def test_without_the_permission_the_action_is_neither_offered_nor_done(client):
    run = stored(GONE)
    user = staff(client, "view_run", "retry_run", "cancel_run")
    assert "repoint_runs" not in client.get(LIST).content.decode()
    repoint(client, [run.pk], task_path=TARGET, apply="1")
    assert Run.objects.get(pk=run.pk).task_path == GONE
    assert not LogEntry.objects.filter(user=user).exists()


def test_the_action_asks_for_a_registered_task_then_points_the_runs_at_it(client):
    ready, failed, running = stored(GONE), stored(GONE, RunStatus.FAILED), stored(GONE, "RUNNING")
    user = staff(client, "view_run", "repoint_run")
    assert '<option value="repoint_runs">' in client.get(LIST).content.decode()

    # First the intermediate page: what they name now, and a choice of registered tasks.
    page = repoint(client, [ready.pk, failed.pk, running.pk]).content.decode()
    assert "Point runs at another task" in page
    assert f"<code>{GONE}</code>: 2 runs" in page  # the running one is left out
    assert f'<option value="{TARGET}">' in page and f'<option value="{GONE}">' not in page
    assert Run.objects.filter(task_path=GONE).count() == 3  # nothing changed yet

    # A task that is not registered (a forged form) is refused, and nothing changes.
    page = repoint(client, [ready.pk], task_path=GONE, apply="1").content.decode()
    assert "Choose a registered task; nothing was changed." in page
    assert Run.objects.filter(task_path=GONE).count() == 3

    page = repoint(client, [ready.pk, failed.pk, running.pk], task_path=TARGET, apply="1")
    text = page.content.decode()
    assert f"Pointed 2 run(s) at task {TARGET}." in text  # the running one is not for it
    paths = dict(Run.objects.values_list("pk", "task_path"))
    assert (paths[ready.pk], paths[failed.pk], paths[running.pk]) == (TARGET, TARGET, GONE)
    logged = LogEntry.objects.filter(user=user, action_flag=CHANGE)
    assert sorted(int(entry.object_id) for entry in logged) == sorted([ready.pk, failed.pk])
    assert {entry.change_message for entry in logged} == {
        f"Pointed at task {TARGET} (was {GONE}) (taskmill control room)"
    }


def test_every_run_matching_the_filter_can_be_pointed_at_once(client):
    gone = [stored(GONE) for _ in range(3)]
    other = stored("tests.testapp.tasks.noop", args=())
    staff(client, "view_run", "repoint_run")
    url = f"{LIST}?task_known=unknown"
    page = repoint(client, [gone[0].pk], url=url, select_across="1").content.decode()
    assert '<input type="hidden" name="select_across" value="1">' in page
    assert f"<code>{GONE}</code>: 3 runs" in page
    page = repoint(client, [gone[0].pk], url=url, select_across="1", task_path=TARGET, apply="1")
    assert f"Pointed 3 run(s) at task {TARGET}." in page.content.decode()
    assert Run.objects.filter(task_path=TARGET).count() == 3
    assert Run.objects.get(pk=other.pk).task_path == "tests.testapp.tasks.noop"


@REAL_WORKER
def test_pointed_runs_run_the_task_they_name_now(client, run_worker):
    waiting = stored(GONE)
    failed = stored(GONE, RunStatus.FAILED)
    staff(client, "view_run", "repoint_run", "retry_run")
    repoint(client, [waiting.pk, failed.pk], task_path=TARGET, apply="1")
    # The failed one runs again once retried, like any failed run.
    client.post(LIST, {"action": "retry_runs", "_selected_action": [str(failed.pk)]})

    run_worker("--burst", "--no-scheduler")

    for run in (waiting, failed):
        run.refresh_from_db()
        assert (run.status, run.return_value) == (RunStatus.SUCCESSFUL, 3)
    assert tasks.add.get_result(str(waiting.pk)).return_value == 3
