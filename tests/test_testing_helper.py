"""taskmill.testing.run_queued(): the real worker, in the test's process, until drained."""

from __future__ import annotations

from datetime import timedelta

import pytest

from taskmill.compat import TaskResultStatus
from taskmill.models import Run, RunStatus
from taskmill.testing import run_queued
from tests.testapp import helper_tasks, tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_that_fails_twice_then_succeeds_is_done_without_waiting_out_its_backoff():
    result = helper_tasks.fails_twice.enqueue()

    drained = run_queued(timeout=30)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"] * 2
    assert drained.attempts == 3 and drained.left == 0
    # Each retry (due in 30 s) was made due in a round of its own.
    assert drained.rounds >= 3


def test_without_include_deferred_a_retry_waits_for_its_time():
    result = helper_tasks.fails_twice.enqueue()

    drained = run_queued(include_deferred=False)

    row = Run.objects.get(pk=int(result.id))
    assert (row.status, row.attempt, row.due) == (RunStatus.READY, 1, False)
    assert drained.attempts == 1 and drained.left == 1


def test_a_snoozed_run_is_done_without_waiting_out_its_snooze_only_when_asked():
    from tests.testapp.snooze_tasks import planned

    waits = planned.enqueue("SSO", delay=3600)  # snoozes an hour, twice, then returns
    drained = run_queued(include_deferred=False)
    row = Run.objects.get(pk=int(waits.id))
    assert (row.status, row.due, row.snoozes, row.errors) == (RunStatus.READY, False, 1, [])
    assert drained.attempts == 1 and drained.left == 1

    drained = run_queued()
    waits.refresh()
    assert (waits.status, waits.return_value, waits.errors) == (TaskResultStatus.SUCCESSFUL, 3, [])
    assert Run.objects.get(pk=int(waits.id)).snoozes == 2
    assert drained.attempts == 2 and drained.left == 0


def test_a_callback_runs_too():
    result = helper_tasks.with_callback.enqueue(21)

    drained = run_queued()

    result.refresh()
    assert result.return_value == 42
    assert list(Effect.objects.values_list("name", flat=True)) == [f"succeeded {result.id}"]
    assert drained.attempts == 2  # the task and its callback


def test_a_dependency_chain_runs_in_order():
    first = helper_tasks.append_step.enqueue("first")
    second = helper_tasks.append_step.using(depends_on=[first]).enqueue("second")
    helper_tasks.append_step.using(depends_on=[second]).enqueue("third")
    assert Run.objects.filter(status=RunStatus.WAITING).count() == 2

    drained = run_queued()

    assert list(Effect.objects.order_by("id").values_list("name", flat=True)) == [
        "first",
        "second",
        "third",
    ]
    assert drained.attempts == 3 and drained.left == 0


def test_a_deferred_run_runs_now_only_when_asked():
    later = tasks.add.using(run_after=timedelta(hours=1)).enqueue(2, 3)
    now = tasks.add.enqueue(1, 1)

    first = run_queued(include_deferred=False)

    later.refresh()
    now.refresh()
    assert now.status == TaskResultStatus.SUCCESSFUL
    assert later.status == TaskResultStatus.READY
    assert (first.attempts, first.left) == (1, 1)

    second = run_queued()

    later.refresh()
    assert later.status == TaskResultStatus.SUCCESSFUL and later.return_value == 5
    # What was asked is kept; only the wait was skipped.
    assert Run.objects.get(pk=int(later.id)).run_after is not None
    assert (second.attempts, second.left) == (1, 0)


def test_only_the_queues_asked_for_run():
    mail = tasks.send_email.enqueue("a@example.com")  # queue "emails"
    other = tasks.add.enqueue(1, 2)

    drained = run_queued(queues=["emails"])

    mail.refresh()
    other.refresh()
    assert mail.status == TaskResultStatus.SUCCESSFUL
    assert other.status == TaskResultStatus.READY
    assert drained.left == 0  # counted in the queues served only


def test_work_that_never_ends_raises_instead_of_hanging():
    helper_tasks.enqueues_itself.enqueue(0)

    with pytest.raises(TimeoutError, match="never drains"):
        run_queued(timeout=1.5)


@pytest.mark.django_db(transaction=False)
def test_inside_a_test_transaction_it_refuses_with_advice():
    tasks.add.enqueue(1, 2)

    with pytest.raises(RuntimeError, match="transaction=True"):
        run_queued()
