"""The worker loop and execution, run in this process (a real worker, real database)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.utils import timezone

from taskmill.backend import DatabaseBackend
from taskmill.compat import TaskResultStatus, task_finished, task_started
from taskmill.models import Run
from taskmill.worker import Worker, WorkerOptions
from tests.conftest import read_records
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def work(**options) -> Worker:
    """Run a burst worker in this thread until nothing is ready."""
    options.setdefault("burst", True)
    worker = Worker(WorkerOptions(poll_interval=0.05, **options))
    assert worker.run() == 0
    return worker


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def test_a_successful_run_is_recorded_truthfully():
    result = tasks.add.enqueue(2, 3)
    before = timezone.now()
    worker = work()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert before <= result.started_at <= result.finished_at <= timezone.now()
    assert result.last_attempted_at == result.started_at
    assert result.enqueued_at <= result.started_at
    assert result.worker_ids == [worker.id]
    assert result.errors == []
    assert result.attempts == 1
    run = row(result)
    assert run.attempt == 1 and run.worker_id == "" and run.lease_expires_at is None
    assert worker.processed == 1


def test_a_failing_task_is_failed_with_its_exception_and_the_worker_goes_on():
    failing = tasks.fail.enqueue("it broke")
    after = tasks.add.enqueue(1, 1)
    work()
    failing.refresh()
    after.refresh()
    assert failing.status == TaskResultStatus.FAILED
    assert len(failing.errors) == 1
    error = failing.errors[0]
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "ValueError: it broke" in error.traceback
    assert "tests/testapp/tasks.py" in error.traceback
    assert failing.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = failing.return_value
    assert after.status == TaskResultStatus.SUCCESSFUL


def test_a_return_value_that_is_not_json_fails_the_run():
    result = tasks.return_unserializable.enqueue()
    work()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    # TypeError, as Django's own backends record it.
    assert result.errors[0].exception_class_path == "builtins.TypeError"
    assert "the return value is a builtins.object" in result.errors[0].traceback


@pytest.mark.parametrize(
    "task_path",
    [
        "os.system",  # importable, but not a task and not in an installed app
        "tests.testapp.tasks.not_a_task",  # a plain function in an installed app
        "tests.testapp.tasks.does_not_exist",
        "no_such_module.task",
    ],
)
def test_a_run_naming_no_registered_task_fails_and_runs_nothing(task_path):
    result = tasks.record.enqueue("should not run")
    Run.objects.filter(pk=int(result.id)).update(task_path=task_path)
    started = []

    def on_started(sender, task_result, **kwargs):
        started.append(task_result.id)

    task_started.connect(on_started)
    try:
        work()
    finally:
        task_started.disconnect(on_started)
    run = Run.objects.get(pk=int(result.id))
    assert run.status == TaskResultStatus.FAILED
    assert run.errors[0]["exception_class_path"] == "taskmill.exceptions.TaskNotRegistered"
    assert f"{task_path!r} is not registered" in run.errors[0]["traceback"]
    assert started == []


def test_takes_context_sees_the_attempt_and_its_own_result(record_dir, monkeypatch):
    monkeypatch.setenv("TASKMILL_TEST_RECORD_DIR", str(record_dir))
    result = tasks.record.enqueue("ctx")
    counted = tasks.attempt_number.enqueue()
    work()
    assert read_records(record_dir) == [f"{result.id} 1 ctx"]
    counted.refresh()
    assert counted.return_value == 1


def test_signals_are_sent_at_the_right_moments():
    seen = []

    def on_started(sender, task_result, **kwargs):
        stored = Run.objects.get(pk=int(task_result.id))
        seen.append(("started", sender, task_result.status, stored.status, task_result.attempts))

    def on_finished(sender, task_result, **kwargs):
        stored = Run.objects.get(pk=int(task_result.id))
        seen.append(
            ("finished", sender, task_result.status, stored.status, task_result.return_value)
        )

    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        tasks.add.enqueue(20, 22)
        work()
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)
    assert seen == [
        ("started", DatabaseBackend, TaskResultStatus.RUNNING, TaskResultStatus.RUNNING, 1),
        # Sent once the outcome is stored: a receiver reading the database sees it.
        ("finished", DatabaseBackend, TaskResultStatus.SUCCESSFUL, TaskResultStatus.SUCCESSFUL, 42),
    ]


def test_task_finished_is_sent_for_failures_too():
    statuses = []

    def on_finished(sender, task_result, **kwargs):
        statuses.append((task_result.status, [e.exception_class_path for e in task_result.errors]))

    task_finished.connect(on_finished)
    try:
        tasks.fail.enqueue()
        work()
    finally:
        task_finished.disconnect(on_finished)
    assert statuses == [(TaskResultStatus.FAILED, ["builtins.ValueError"])]


def test_a_receiver_that_raises_does_not_take_the_worker_down():
    def broken(sender, task_result, **kwargs):
        raise RuntimeError("receiver bug")

    task_started.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
        work()
    finally:
        task_started.disconnect(broken)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "builtins.RuntimeError"


def test_async_tasks_run_together_on_one_event_loop():
    results = tasks.async_rendezvous.enqueue_many([(("loop", 5), {})] * 5)
    work(concurrency=5)
    threads = set()
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        threads.add(result.return_value)
    assert threads == {"taskmill-async"}


def test_sync_tasks_run_side_by_side_up_to_the_concurrency():
    results = tasks.sync_rendezvous.enqueue_many([(("threads", 3), {})] * 3)
    work(concurrency=3)
    names = set()
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
        names.add(result.return_value)
    assert len(names) == 3


def test_async_task_return_value():
    result = tasks.async_add.enqueue(40, 2)
    work()
    result.refresh()
    assert result.return_value == 42


def test_claim_order_is_priority_then_run_after_then_enqueue_order(record_dir, monkeypatch):
    monkeypatch.setenv("TASKMILL_TEST_RECORD_DIR", str(record_dir))
    past = timezone.now() - dt.timedelta(minutes=5)
    ids = {
        "low": tasks.record.using(priority=-10).enqueue("low").id,
        "normal-1": tasks.record.enqueue("normal-1").id,
        "normal-2": tasks.record.enqueue("normal-2").id,
        "normal-earlier": tasks.record.using(run_after=past).enqueue("normal-earlier").id,
        "high": tasks.record.using(priority=10).enqueue("high").id,
    }
    assert ids
    work()
    order = [line.split()[2] for line in read_records(record_dir)]
    assert order == ["high", "normal-earlier", "normal-1", "normal-2", "low"]


def test_a_deferred_run_waits_for_its_time():
    later = tasks.noop.using(run_after=dt.timedelta(hours=1)).enqueue()
    now = tasks.noop.enqueue()
    work()
    assert row(later).status == TaskResultStatus.READY
    assert row(now).status == TaskResultStatus.SUCCESSFUL


def test_max_tasks_stops_after_that_many():
    tasks.noop.enqueue_many([((), {})] * 5)
    worker = work(max_tasks=3, burst=False)
    assert worker.processed == 3
    assert Run.objects.filter(status=TaskResultStatus.SUCCESSFUL).count() == 3
    assert Run.objects.filter(status=TaskResultStatus.READY).count() == 2


def test_queues_and_excluded_queues():
    default = tasks.noop.enqueue()
    email = tasks.send_email.enqueue("a@example.com")
    low = tasks.noop.using(queue_name="low").enqueue()
    work(queues=("emails",))
    assert [row(r).status for r in (default, email, low)] == ["READY", "SUCCESSFUL", "READY"]
    work(exclude_queues=("low",))
    assert [row(r).status for r in (default, email, low)] == ["SUCCESSFUL", "SUCCESSFUL", "READY"]


def test_enqueue_in_the_same_process_wakes_an_idle_worker():
    worker = Worker(WorkerOptions(poll_interval=60.0))  # polling alone would take a minute
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        from tests.conftest import wait_until

        wait_until(lambda: worker.claimer.claimed_total == 0 and not worker.claimer.maybe_ready, 10)
        result = tasks.add.enqueue(1, 2)
        wait_until(lambda: row(result).status == TaskResultStatus.SUCCESSFUL, 10)
    finally:
        worker.request_stop()
        thread.join(10)
    assert not thread.is_alive()


def test_many_runs_are_claimed_and_finished_in_batches():
    results = tasks.noop.enqueue_many([((), {})] * 500)
    worker = work()
    assert worker.processed == 500
    assert Run.objects.filter(status=TaskResultStatus.SUCCESSFUL).count() == 500
    assert {row(results[0]).attempt, row(results[-1]).attempt} == {1}


def test_a_stale_attempt_let_go_leaves_the_newer_hold_of_its_run():
    # Found by the chaos soak (seed 68081686, PostgreSQL): a frozen worker's attempt 2 was
    # taken away; thawed, the worker claimed the run back as attempt 3, then wrote attempt 2's
    # stale outcome, which dropped the hold of the run (kept by id only). Unheld, attempt 3
    # went unrenewed and was given back as never claimed while it ran: it ran twice.
    import dataclasses

    from taskmill.db import get_engine
    from taskmill.worker.held import HeldRuns

    tasks.noop.enqueue()
    now = timezone.now()
    (run,) = get_engine("default").claim(
        worker_id="w", limit=1, now=now, lease_until=now + dt.timedelta(minutes=1), queues=None
    )
    held = HeldRuns()
    newer = dataclasses.replace(run, attempt=run.attempt + 1)
    held.hold([newer])
    held.let_go([run])  # the stale attempt
    assert held.snapshot() == {run.id: newer.attempt}
    held.let_go([newer])
    assert held.snapshot() == {}


@pytest.mark.django_db(transaction=False)
def test_the_prefetch_backlog_covers_slow_claims():
    # 10 ms tasks and quick claims: the 50 ms window, 5 runs. Claims slowed to 40 ms (CPU-bound
    # tasks keep the worker's thread waiting for the interpreter lock): the worker claims again
    # at half the backlog, which must outlast the claim, so 4 claims' time: 16 runs.
    from taskmill.worker.claimer import Prefetch

    prefetch = Prefetch(concurrency=1)
    assert prefetch.backlog() == 1  # nothing measured yet: one per slot
    for _ in range(50):
        prefetch.observe(0.01)
        prefetch.observe_claim(0.001)
    assert prefetch.backlog() in (4, 5)  # 50 ms / 10 ms, give or take the float rounding
    for _ in range(50):
        prefetch.observe_claim(0.04)
    assert prefetch.backlog() in (15, 16)
    slow = Prefetch(concurrency=1)
    for _ in range(50):
        slow.observe(1.0)
        slow.observe_claim(0.04)
    assert slow.backlog() == 0  # slow tasks: nothing held beyond the free slots


def test_an_emergency_exit_on_a_broken_connection_gives_the_runs_back_on_a_new_one():
    # A second signal raises wherever the worker's thread is, possibly in the middle of a
    # statement: the connection it leaves may be unusable. Here it is closed under Django's
    # feet; the unstarted runs a graceful stop took but had not released yet must still go
    # back, on a fresh connection.
    from django.db import connections

    from taskmill.db import get_engine

    for _ in range(2):
        tasks.noop.enqueue()
    worker = Worker(WorkerOptions())
    now = timezone.now()
    runs = get_engine("default").claim(
        worker_id=worker.id,
        limit=2,
        now=now,
        lease_until=now + dt.timedelta(minutes=1),
        queues=None,
    )
    assert len(runs) == 2
    worker.held.hold(runs)
    worker.claimer.outstanding = len(runs)
    worker.graceful_stop.unreleased = list(runs)  # taken by a graceful stop, not written
    connections["default"].connection.close()  # the driver's connection, not Django's wrapper
    worker.emergency_exit()
    assert sorted(Run.objects.values_list("status", "worker_id")) == [("READY", ""), ("READY", "")]
    assert worker.claimer.outstanding == 0
    assert worker.held.snapshot() == {}
