"""The control API with real workers: cancel, stop (thread, child process, async), retry,
pausing a queue and asking a worker to shut down."""

from __future__ import annotations

import pytest

from taskmill import control
from taskmill.exceptions import RunCancelled, class_path
from taskmill.models import Queue, Run, RunStatus, Worker
from tests.conftest import FAST_LEASES, process_alive, read_records, wait_until
from tests.testapp import execution_tasks, tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CANCELLED = class_path(RunCancelled)
STOP_DEADLINE = 15.0


def _status(run_id) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=int(run_id))


def _wait_status(run_id, status: str, timeout: float = STOP_DEADLINE) -> Run:
    wait_until(
        lambda: _status(run_id) == status,
        timeout=timeout,
        message=f"run {run_id} to be {status} (it is {_status(run_id)})",
    )
    return Run.objects.get(pk=int(run_id))


def _wait_running(run_id) -> None:
    _wait_status(run_id, RunStatus.RUNNING, timeout=30)


def test_cancel_a_ready_run(run_worker):
    result = tasks.add.enqueue(1, 2)
    assert control.cancel(result) is True
    run = Run.objects.get(pk=int(result.id))
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert run.errors[-1]["exception_class_path"] == CANCELLED
    assert control.run_status(result) == RunStatus.CANCELLED
    # Django's API knows no CANCELLED: it shows FAILED.
    result.refresh()
    assert result.status == "FAILED"

    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == RunStatus.CANCELLED
    assert run.worker_ids == []
    assert run.return_value is None
    # Cancelled is final: a second cancel (or stop) changes nothing.
    assert control.cancel(result) is False
    assert control.stop(result) is False
    assert len(Run.objects.get(pk=int(result.id)).errors) == 1


def test_stop_a_running_thread_task_the_worker_goes_on(start_worker, record_dir):
    result = execution_tasks.cooperative_loop.enqueue()
    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    wait_until(
        lambda: f"looping {result.id}" in read_records(record_dir),
        message="the loop to start",
    )
    _wait_running(result.id)
    assert control.stop(result) is True
    # Asking twice while the first request is pending changes nothing.
    assert control.stop(result) is False
    run = _wait_status(result.id, RunStatus.CANCELLED)
    assert run.errors[-1]["exception_class_path"] == CANCELLED
    assert run.finished_at is not None
    assert control.run_status(result) == RunStatus.CANCELLED
    assert worker.process.poll() is None, worker.output  # the worker lives on

    later = tasks.add.enqueue(2, 3)
    run = _wait_status(later.id, RunStatus.SUCCESSFUL, timeout=30)
    assert run.return_value == 5
    assert worker.process.poll() is None, worker.output


def test_stop_a_running_child_process_task_kills_the_child(start_worker, record_dir):
    result = execution_tasks.sleep_in_child.enqueue(300)
    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    pid = int(
        str(
            wait_until(
                lambda: next(
                    (
                        line.split()[1]
                        for line in read_records(record_dir)
                        if line.startswith("child ")
                    ),
                    None,
                ),
                message="the child to start",
            )
        )
    )
    assert pid != worker.process.pid
    _wait_running(result.id)
    assert process_alive(pid)
    assert control.stop(result) is True
    run = _wait_status(result.id, RunStatus.CANCELLED)
    assert run.errors[-1]["exception_class_path"] == CANCELLED
    wait_until(lambda: not process_alive(pid), timeout=STOP_DEADLINE, message=f"child {pid} to die")
    assert worker.process.poll() is None, worker.output


def test_stop_a_running_async_task(start_worker, record_dir):
    result = execution_tasks.async_forever.enqueue()
    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    wait_until(lambda: "async started" in read_records(record_dir), message="the task to start")
    _wait_running(result.id)
    assert control.stop(result) is True
    run = _wait_status(result.id, RunStatus.CANCELLED)
    assert run.errors[-1]["exception_class_path"] == CANCELLED
    assert worker.process.poll() is None, worker.output
    later = tasks.async_add.enqueue(4, 5)
    assert _wait_status(later.id, RunStatus.SUCCESSFUL, timeout=30).return_value == 9


def test_retry_a_failed_run(run_worker):
    result = tasks.fail.enqueue("first")
    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == RunStatus.FAILED
    assert len(run.errors) == 1
    # Only FAILED and CANCELLED runs can be retried.
    done = tasks.add.enqueue(1, 1)
    run_worker("--burst", "--no-scheduler")
    assert control.retry(done) is False

    assert control.retry(result) is True
    run = Run.objects.get(pk=int(result.id))
    assert run.status == RunStatus.READY
    assert run.finished_at is None
    assert control.retry(result) is False  # READY now: nothing to retry

    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == RunStatus.FAILED
    assert len(run.errors) == 2, run.errors  # the first failure kept, the new one added
    assert all(error["exception_class_path"] == "builtins.ValueError" for error in run.errors)
    assert Run.objects.get(pk=int(done.id)).status == RunStatus.SUCCESSFUL


def test_retry_a_cancelled_run(run_worker):
    result = tasks.add.enqueue(3, 4)
    assert control.cancel(result) is True
    assert control.retry(result) is True
    assert control.run_status(result) == RunStatus.READY
    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == RunStatus.SUCCESSFUL
    assert run.return_value == 7


def test_pause_and_resume_a_queue(run_worker):
    assert control.pause_queue("low") is True
    assert control.pause_queue("low") is False  # already paused
    assert Queue.objects.get(pk="low").paused
    low = tasks.add.using(queue_name="low").enqueue(1, 2)
    other = tasks.add.enqueue(5, 5)
    run_worker("--burst", "--no-scheduler")
    assert _status(low.id) == RunStatus.READY
    assert Run.objects.get(pk=int(low.id)).worker_ids == []
    assert _status(other.id) == RunStatus.SUCCESSFUL  # other queues go on

    assert control.resume_queue("low") is True
    assert control.resume_queue("low") is False
    run_worker("--burst", "--no-scheduler")
    run = Run.objects.get(pk=int(low.id))
    assert run.status == RunStatus.SUCCESSFUL
    assert run.return_value == 3


def test_pause_a_queue_while_a_worker_runs(start_worker):
    start_worker("--no-scheduler", env=FAST_LEASES)
    first = tasks.add.using(queue_name="low").enqueue(1, 1)
    _wait_status(first.id, RunStatus.SUCCESSFUL, timeout=30)
    assert control.pause_queue("low") is True
    held = tasks.add.using(queue_name="low").enqueue(2, 2)
    other = tasks.add.enqueue(3, 3)
    _wait_status(other.id, RunStatus.SUCCESSFUL, timeout=30)
    assert _status(held.id) == RunStatus.READY
    assert control.resume_queue("low") is True
    assert _wait_status(held.id, RunStatus.SUCCESSFUL, timeout=30).return_value == 4


def test_shutdown_worker(start_worker):
    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    row = wait_until(
        lambda: Worker.objects.filter(pid=worker.process.pid, state="running").first(),
        message=lambda: f"the worker's row:\n{worker.output}",
    )
    assert control.shutdown_worker(row.pk) is True
    assert control.shutdown_worker(row.pk) is False  # already asked
    code = worker.wait(timeout=STOP_DEADLINE)
    assert code == 0, worker.output
    row = Worker.objects.get(pk=row.pk)
    assert row.state == Worker.State.STOPPED
    assert row.shutdown_requested
    assert control.shutdown_worker(row.pk) is False  # stopped: nothing to ask


def test_control_of_an_unknown_run_changes_nothing():
    assert control.cancel(999_999) is False
    assert control.stop(999_999) is False
    assert control.retry(999_999) is False
    assert control.shutdown_worker("no-such-worker") is False


def test_on_postgresql_a_stop_is_seen_before_the_next_heartbeat(start_worker, record_dir):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY wakes the worker on PostgreSQL only")
    # A slow heartbeat: only the NOTIFY can make the worker learn of the stop in time.
    slow = {"TASKMILL_TEST_HEARTBEAT": "20", "TASKMILL_TEST_LEASE": "120"}
    result = execution_tasks.cooperative_loop.enqueue()
    start_worker("--no-scheduler", env=slow)
    wait_until(lambda: f"looping {result.id}" in read_records(record_dir), message="the loop")
    _wait_running(result.id)
    assert control.stop(result) is True
    run = _wait_status(result.id, RunStatus.CANCELLED, timeout=5)
    assert run.errors[-1]["exception_class_path"] == CANCELLED


def test_retry_refuses_a_run_whose_unique_key_is_taken_again():
    first = tasks.unique_job.enqueue("r")
    Run.objects.filter(pk=int(first.id)).update(status=RunStatus.FAILED)
    second = tasks.unique_job.enqueue("r")
    assert second.id != first.id
    with pytest.raises(control.RunConflict, match="same unique key"):
        control.retry(first)
    assert control.run_status(first) == RunStatus.FAILED  # nothing changed


def test_on_postgresql_a_stop_cancels_the_query_a_thread_task_runs(start_worker, record_dir):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_cancel_backend is PostgreSQL's")
    result = execution_tasks.long_query.enqueue()
    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    wait_until(lambda: "query started" in read_records(record_dir), message="the query")
    assert control.stop(result) is True
    wait_until(
        lambda: control.run_status(result) == RunStatus.CANCELLED,
        timeout=STOP_DEADLINE,
        message="the run to end CANCELLED",
    )
    run = Run.objects.get(pk=int(result.id))
    assert "canceling statement" in run.errors[-1]["traceback"]  # the server cancelled it
    assert worker.process.poll() is None


def test_a_run_stopped_while_queued_in_a_worker_ends_cancelled_with_its_callback(
    start_worker, record_dir
):
    # Found by the long soak (MariaDB, seed 303): a claimed run stopped before a task thread
    # took it was written CANCELLED without its task at hand, so its on_failure callback was
    # never enqueued (and its result's time-to-live ignored).
    from tests.testapp import soak_tasks

    execution_tasks.block_first_attempt.using(priority=10).enqueue("blocker")
    queued = soak_tasks.with_callbacks.enqueue("stop-me", True)
    # Concurrency 1: the first claim takes both, the blocker runs, the other waits its turn.
    start_worker("--concurrency", "1", "--no-scheduler", env=FAST_LEASES)
    wait_until(
        lambda: Run.objects.filter(pk=queued.id, status=RunStatus.RUNNING).exists(),
        message="the second run to be claimed while the first blocks",
    )
    assert control.stop(queued)
    run = wait_until(
        lambda: Run.objects.filter(pk=queued.id, status=RunStatus.CANCELLED).first(),
        message="the queued run to end CANCELLED",
    )
    assert run.errors[-1]["exception_class_path"] == class_path(RunCancelled)
    callbacks = Run.objects.filter(task_path="tests.testapp.soak_tasks.callback_failed")
    assert [c.args for c in callbacks] == [[str(run.pk)]]
    assert not any(f"start {run.pk} " in line for line in read_records(record_dir))
