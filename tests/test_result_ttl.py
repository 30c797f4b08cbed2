"""Result time-to-live per outcome: ``result_ttl`` (a task's, one call's) and
``TASKMILL_RESULT_TTL`` as a dict by outcome set ``expires_at`` by how each run ended, in a
real worker; the pruner then takes the successful runs before the failures kept longer; and
what is wrong is said where it is given."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.utils import timezone

import taskmill
from taskmill.compat import InvalidTask, TaskResultStatus
from taskmill.db.records import ClaimedRun
from taskmill.models import Run, RunStatus
from taskmill.result_ttl import TTLByOutcome, check_setting
from taskmill.tasks import expiry_for
from taskmill.worker.duties.pruner import Pruner
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

DAY = dt.timedelta(days=1)


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def test_each_outcome_expires_by_its_own_ttl_and_the_pruner_takes_successes_first(run_worker):
    succeeded = tasks.judged.enqueue()
    failed = tasks.judged.enqueue(fail=True)
    cancelled = tasks.judged.using(run_after=dt.timedelta(hours=1)).enqueue()
    taskmill.cancel(cancelled)  # never started: CANCELLED by the control API
    # Per call, a dict too: stored with the run, as JSON; an outcome it leaves out is kept.
    per_call = tasks.judged.using(result_ttl={RunStatus.SUCCESSFUL: dt.timedelta(hours=2)})
    per_call_ok, per_call_failed = per_call.enqueue(), per_call.enqueue(fail=True)
    assert row(per_call_ok).options == {"result_ttl": {"SUCCESSFUL": 7200.0}}

    run_worker("--burst", "--no-scheduler")

    expected = [
        (succeeded, RunStatus.SUCCESSFUL, dt.timedelta(minutes=1)),
        (failed, RunStatus.FAILED, 30 * DAY),
        (cancelled, RunStatus.CANCELLED, None),
        (per_call_ok, RunStatus.SUCCESSFUL, dt.timedelta(hours=2)),
        (per_call_failed, RunStatus.FAILED, None),
    ]
    for result, status, ttl in expected:
        run = row(result)
        assert run.status == status
        assert run.expires_at == (None if ttl is None else run.finished_at + ttl), status

    # The pruner duty, on a clock at the success's expiry: the success goes, the failure
    # (kept 30 days) and the runs kept for good stay.
    pruner = Pruner("default")
    pruner.run(row(succeeded).expires_at)
    assert not Run.objects.filter(pk=int(succeeded.id)).exists()
    assert Run.objects.filter(pk=int(failed.id)).exists()
    # Thirty days on, the failure too; never those without an expiry.
    pruner.run(row(failed).expires_at)
    assert set(Run.objects.values_list("pk", flat=True)) == {
        int(cancelled.id),
        int(per_call_failed.id),
    }


def test_the_setting_by_outcome_applies_to_tasks_without_their_own(start_worker):
    ttl = {"SUCCESSFUL": 5, "FAILED": 86400}  # CANCELLED left out: kept
    succeeded, failed = tasks.add.enqueue(1, 2), tasks.fail.enqueue("x")
    with override_settings(TASKMILL_RESULT_TTL=ttl):
        cancelled = tasks.noop.using(run_after=dt.timedelta(hours=1)).enqueue()
        taskmill.cancel(cancelled)
    worker = start_worker(
        "--burst", "--no-scheduler", env={"TASKMILL_TEST_RESULT_TTL": json.dumps(ttl)}
    )
    assert worker.wait(120) == 0, worker.output

    ok, bad = row(succeeded), row(failed)
    assert (ok.status, bad.status) == (RunStatus.SUCCESSFUL, RunStatus.FAILED)
    assert ok.expires_at == ok.finished_at + dt.timedelta(seconds=5)
    assert bad.expires_at == bad.finished_at + DAY
    assert row(cancelled).status == RunStatus.CANCELLED and row(cancelled).expires_at is None


# -- where it is given ----------------------------------------------------------------------------


def plain() -> None: ...


def by_outcome() -> None: ...


def shortly() -> None: ...


@IN_A_TRANSACTION
def test_a_ttl_by_outcome_is_normalised_once():
    made = taskmill.task(
        result_ttl={
            RunStatus.SUCCESSFUL: dt.timedelta(days=1),
            TaskResultStatus.FAILED: 30 * 86400,  # Django's names are the same words
            "CANCELLED": None,
        }
    )(by_outcome)
    assert isinstance(made.result_ttl, TTLByOutcome)
    assert made.result_ttl == {"SUCCESSFUL": 86400.0, "FAILED": 2592000.0, "CANCELLED": None}
    hash(made)  # a Task is a frozen dataclass: it stays hashable
    # A call that gives the task's own value stores nothing; another value is stored as JSON.
    same = {"SUCCESSFUL": 86400, "FAILED": dt.timedelta(days=30), "CANCELLED": None}
    assert made.using(result_ttl=same).stored_options() is None
    assert made.using(result_ttl={"FAILED": 1}).stored_options() == {"result_ttl": {"FAILED": 1.0}}

    now = timezone.now()
    assert expiry_for(made, None, now, RunStatus.SUCCESSFUL) == now + DAY
    assert expiry_for(made, None, now, RunStatus.CANCELLED) is None
    # A retry carries the expiry of the cancellation a stop asked for meanwhile makes of it.
    short = taskmill.task(result_ttl={"CANCELLED": 7, "FAILED": 9})(shortly)
    assert expiry_for(short, None, now, RunStatus.READY) == now + dt.timedelta(seconds=7)
    # A stored call's value wins over the task's; an outcome it leaves out is kept.
    assert expiry_for(short, {"result_ttl": {"SUCCESSFUL": 3}}, now, RunStatus.FAILED) is None


@IN_A_TRANSACTION
@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ({"READY": 5}, "takes the outcomes SUCCESSFUL, FAILED, CANCELLED as keys .* not 'READY'"),
        ({"DONE": 5}, "not 'DONE'"),
        ({1: 5}, "not 1"),
        ({"FAILED": -1}, r"result_ttl\['FAILED'\] must be seconds >= 0, a timedelta or None"),
        ({"FAILED": "a week"}, "not 'a week'"),
        ({"FAILED": float("inf")}, "not inf"),
        ({"SUCCESSFUL": True}, "not True"),
        ("1 day", "result_ttl must be seconds >= 0 or a timedelta, not '1 day'"),
    ],
)
def test_a_bad_ttl_is_refused_where_it_is_given(ttl, message):
    with pytest.raises(InvalidTask, match=message):
        taskmill.task(result_ttl=ttl)(plain)
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(result_ttl=ttl)


@IN_A_TRANSACTION
def test_a_bad_setting_is_a_system_check_error():
    with override_settings(TASKMILL_RESULT_TTL={"SUCCESSFUL": 60, "FINISHED": 60}):
        (error,) = check_setting()
        assert error.id == "taskmill.E007"
        assert "TASKMILL_RESULT_TTL per outcome takes the outcomes" in error.msg
        assert "not 'FINISHED'" in error.msg
        with pytest.raises(SystemCheckError, match=r"taskmill\.E007"):
            call_command("check")
        # Were a worker started anyway, its finishes would keep runs, never fail over it.
        assert expiry_for(None, None, timezone.now(), RunStatus.SUCCESSFUL) is None
    with override_settings(TASKMILL_RESULT_TTL={"FAILED": dt.timedelta(days=30)}):
        assert check_setting() == []
        now = timezone.now()
        assert expiry_for(None, None, now, RunStatus.FAILED) == now + 30 * DAY


@IN_A_TRANSACTION
@pytest.mark.parametrize(
    "stored",
    [{"DONE": 1}, {"FAILED": -1}, {"FAILED": "1"}, ["FAILED", 1], "1"],
    ids=["a bad outcome", "negative", "text", "a list", "text alone"],
)
def test_a_forged_stored_ttl_fails_its_run_unrun(stored):
    now = timezone.now()
    claimed = ClaimedRun(
        id=1, task_path="tests.testapp.tasks.add", backend="default", queue_name="default",
        priority=0, args=[1, 2], kwargs={}, attempt=1, enqueued_at=now, run_after=None,
        available_at=now, worker_ids=["w"], errors=[], options={"result_ttl": stored},
    )  # fmt: skip
    assert claimed.problem is not None and "'options' column" in claimed.problem
    assert claimed.options is None  # nothing downstream reads it
