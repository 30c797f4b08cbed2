"""Retries: max_attempts, retry_on, backoff (custom and the default full jitter), per-call
max_attempts, context.attempt, the stored times of each retry; in real worker processes."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from taskmill.compat import TaskResultStatus
from taskmill.db import Outcome, get_engine
from taskmill.exceptions import RunCancelled
from taskmill.models import Run, RunStatus
from taskmill.retries import default_backoff, retry_delay
from tests.conftest import read_records, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
# Tests that run no worker: rolled back at the end, much cheaper than a flush.
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def stamps(record_dir: Path, kind: str, run_id: str) -> list[tuple[int, dt.datetime]]:
    """(attempt, start time) of each recorded attempt of one run, in attempt order."""
    found = []
    for line in read_records(record_dir):
        parts = line.split()
        if parts[0] == kind and parts[1] == run_id:
            found.append((int(parts[2]), dt.datetime.fromisoformat(parts[3])))
    return sorted(found)


def error_paths(run: Run) -> list[str]:
    return [error["exception_class_path"] for error in run.errors]


# -- in real workers ---------------------------------------------------------------------------


def test_a_burst_worker_retries_by_the_rules(run_worker, record_dir):
    succeeds = tasks.flaky.enqueue(2)  # max_attempts=3: fails twice, then succeeds
    exhausted = tasks.flaky.enqueue(5)  # never gets to succeed
    connection = tasks.picky.enqueue("connection")  # retry_on=(ConnectionError,)
    transient = tasks.picky.enqueue("transient")  # a ConnectionError subclass
    value = tasks.picky.enqueue("value")  # not in retry_on: final at once
    gives_up = tasks.backoff_gives_up.enqueue()  # backoff returns None after 2 failures
    default = tasks.always_fails.enqueue()  # the task's own max_attempts=1
    more = tasks.always_fails.using(max_attempts=4).enqueue()
    fewer = tasks.flaky.using(max_attempts=1).enqueue(1)  # would succeed on attempt 2
    same = tasks.flaky.using(max_attempts=3).enqueue(1)  # equal to the task's: not stored
    later = tasks.retry_in_an_hour.enqueue()  # its retry is an hour away
    async_task = tasks.async_flaky.enqueue()  # retried on the event loop
    # Per-call options are stored on the run, only when they differ from the task's.
    assert row(more).options == {"max_attempts": 4}
    assert row(fewer).options == {"max_attempts": 1}
    assert row(default).options is None and row(same).options is None

    worker = run_worker("--burst", "--no-scheduler")

    # A retry is the same run going again; one error per failed attempt, in order.
    succeeds.refresh()
    assert succeeds.status == TaskResultStatus.SUCCESSFUL
    assert succeeds.return_value == 3  # context.attempt on the attempt that succeeded
    assert succeeds.attempts == 3 and len(set(succeeds.worker_ids)) == 1
    assert [e.exception_class_path for e in succeeds.errors] == ["builtins.ConnectionError"] * 2
    assert "attempt 1 failed" in succeeds.errors[0].traceback
    assert "attempt 2 failed" in succeeds.errors[1].traceback
    assert row(succeeds).attempt == 3 and row(succeeds).finished_at is not None
    assert [n for n, _ in stamps(record_dir, "flaky", succeeds.id)] == [1, 2, 3]

    # The last failure is final: FAILED at max_attempts, and the worker, which ran until
    # nothing was ready, did not try it again.
    run = row(exhausted)
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert (run.attempt, len(run.errors), len(run.worker_ids)) == (3, 3, 3)
    assert ["attempt 1 failed" in e["traceback"] for e in run.errors] == [True, False, False]
    assert "attempt 3 failed" in run.errors[2]["traceback"]
    assert [n for n, _ in stamps(record_dir, "flaky", exhausted.id)] == [1, 2, 3]

    # retry_on: ConnectionError and its subclasses go again, anything else is final.
    assert (row(connection).status, error_paths(row(connection))) == (
        RunStatus.FAILED,
        ["builtins.ConnectionError"] * 3,
    )
    assert error_paths(row(transient)) == ["tests.testapp.tasks.Transient"] * 3
    assert (row(value).status, row(value).attempt) == (RunStatus.FAILED, 1)
    assert error_paths(row(value)) == ["builtins.ValueError"]
    # A backoff returning None ends the retries, whatever max_attempts says.
    assert (row(gives_up).status, row(gives_up).attempt) == (RunStatus.FAILED, 2)

    # max_attempts per call, with .using().
    assert (row(default).status, row(default).attempt) == (RunStatus.FAILED, 1)
    assert (row(more).status, row(more).attempt, len(row(more).errors)) == ("FAILED", 4, 4)
    assert (row(fewer).status, row(fewer).attempt) == (RunStatus.FAILED, 1)
    assert (row(same).status, row(same).attempt) == (RunStatus.SUCCESSFUL, 2)

    # A retry due later is written READY and not due, available after its backoff, with its
    # error recorded and nothing final set; Django's API sees it as READY.
    run = row(later)
    assert run.status == RunStatus.READY and run.due is False
    assert run.attempt == 1 and len(run.errors) == 1 and run.worker_id == ""
    assert run.finished_at is None and run.expires_at is None and run.lease_expires_at is None
    waited = run.available_at - run.last_attempted_at
    assert dt.timedelta(seconds=3600) <= waited <= dt.timedelta(seconds=3610)
    later.refresh()
    assert later.status == TaskResultStatus.READY
    assert len(later.errors) == 1 and later.finished_at is None
    async_task.refresh()
    assert (async_task.status, async_task.return_value) == (TaskResultStatus.SUCCESSFUL, 2)
    assert [e.exception_class_path for e in async_task.errors] == ["builtins.ConnectionError"]
    assert "stopped after 26 task(s)" in worker.output, worker.output


def test_retries_wait_for_their_backoff(start_worker, record_dir):
    custom = tasks.backing_off.enqueue()  # waits 0.3 s, then 0.6 s
    jittered = tasks.jittered.enqueue()  # waits uniform(0, 0.2), then uniform(0, 0.3)
    worker = start_worker("--poll-interval", "0.05", "--no-scheduler")
    done = (RunStatus.FAILED, 3)
    for result in (custom, jittered):
        wait_until(lambda r=result: (row(r).status, row(r).attempt) == done, 20, message=result)
    worker.signal()
    assert worker.wait(30) == 0, worker.output

    # The backoff got (failures so far, the exception); not called on the final failure.
    backoffs = [line for line in read_records(record_dir) if line.startswith("backoff")]
    assert backoffs == ["backoff 1 ConnectionError 0.3", "backoff 2 ConnectionError 0.6"]
    starts = [at for _, at in stamps(record_dir, "backing-off", custom.id)]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= dt.timedelta(seconds=0.3)
    assert starts[2] - starts[1] >= dt.timedelta(seconds=0.6)
    run = row(custom)
    assert len(run.errors) == 3 and run.finished_at >= run.last_attempted_at
    # The stored times: the last retry was due 0.6 s after its attempt ended, and the last
    # attempt (last_attempted_at) did not start before then.
    assert run.available_at - starts[1] >= dt.timedelta(seconds=0.6)
    assert run.available_at - starts[1] < dt.timedelta(seconds=2)
    assert run.last_attempted_at >= run.available_at

    # The default backoff: full jitter, never beyond min(cap, base * 2^(failures-1)).
    starts = [at for _, at in stamps(record_dir, "jittered", jittered.id)]
    assert len(starts) == 3
    run = row(jittered)
    assert dt.timedelta(0) <= run.available_at - starts[1] < dt.timedelta(seconds=0.3 + 1)
    assert run.last_attempted_at >= run.available_at


def test_a_stop_requested_while_running_makes_a_failure_final(start_worker, tmp_path):
    release = tmp_path / "release"
    result = tasks.fail_after_file.enqueue(str(release))
    worker = start_worker("--burst", "--no-scheduler")
    wait_until(lambda: row(result).status == RunStatus.RUNNING, message="the run to start")
    Run.objects.filter(pk=int(result.id)).update(stop_requested=True)
    release.touch()
    assert worker.wait(30) == 0, worker.output
    run = row(result)
    # The attempt failed with a retryable error and attempts were left, but a stop is final.
    assert run.status == RunStatus.CANCELLED and run.attempt == 1
    assert run.finished_at is not None
    result.refresh()
    assert result.status == TaskResultStatus.FAILED  # Django's name for CANCELLED
    # on_failure follows a cancellation too, once.
    callbacks = Run.objects.filter(task_path="tests.testapp.tasks.note_failure")
    assert [c.args for c in callbacks] == [[result.id]]


def test_retries_survive_a_busy_heartbeat(start_worker):
    # Many zero-delay retries under a heartbeat every millisecond: runs come back to the
    # same worker while heartbeats judge them. None may be taken for lost.
    results = tasks.always_fails.using(max_attempts=6).enqueue_many([((), {})] * 60)
    worker = start_worker(
        "--burst", "--no-scheduler", "--concurrency", "4", env={"TASKMILL_TEST_HEARTBEAT": "0.001"}
    )
    assert worker.wait(60) == 0, worker.output
    runs = Run.objects.filter(pk__in=[int(result.id) for result in results])
    outcomes = sorted({(run.status, run.attempt) for run in runs})
    assert outcomes == [(RunStatus.FAILED, 6)], outcomes
    assert "no longer this worker's" not in worker.output


# -- the retry as the database writes it ----------------------------------------------------------


@IN_A_TRANSACTION
def test_the_finish_writes_a_retry_fenced_and_a_stop_makes_it_final():
    engine = get_engine("default")
    retried = tasks.always_fails.enqueue()
    stopped = tasks.always_fails.enqueue()
    now = timezone.now()

    def claim(at: dt.datetime) -> list:
        lease = at + dt.timedelta(minutes=5)
        return engine.claim(worker_id="w", limit=10, now=at, lease_until=lease, queues=None)

    assert sorted(run.id for run in claim(now)) == [int(retried.id), int(stopped.id)]
    Run.objects.filter(pk=int(stopped.id)).update(stop_requested=True)
    errors = [{"exception_class_path": "builtins.ConnectionError", "traceback": "x\n"}]
    later = now + dt.timedelta(seconds=30)

    def retry(result, attempt: int = 1) -> Outcome:
        return Outcome(
            run_id=int(result.id),
            attempt=attempt,
            status="READY",
            finished_at=now,
            errors=errors,
            available_at=later,
            expires_at=now + dt.timedelta(hours=1),
        )

    assert engine.finish([retry(retried, attempt=2)]) == {}  # not the attempt it holds
    landed = engine.finish([retry(retried), retry(stopped)])
    assert {run_id: row.status for run_id, row in landed.items()} == {
        int(retried.id): RunStatus.READY,
        int(stopped.id): RunStatus.CANCELLED,  # a stop is final, whatever the attempt said
    }
    run = row(retried)
    assert (run.status, run.due, run.attempt, run.worker_id) == ("READY", False, 1, "")
    assert run.available_at == later and run.errors == errors
    assert run.finished_at is None and run.expires_at is None and run.lease_expires_at is None
    run = row(stopped)
    assert run.status == RunStatus.CANCELLED and run.finished_at == now
    assert run.expires_at == now + dt.timedelta(hours=1) and run.errors == errors
    # The retry is not claimable before its time, and once staged it is, as attempt 2.
    assert engine.stage_due(later - dt.timedelta(seconds=1)) == 0
    assert claim(later - dt.timedelta(seconds=1)) == []
    assert engine.stage_due(later) == 1
    assert [(run.id, run.attempt) for run in claim(later)] == [(int(retried.id), 2)]


# -- the decision itself ------------------------------------------------------------------------


@IN_A_TRANSACTION
def test_default_backoff_is_full_jitter_under_an_exponential_cap():
    random.seed(1234)
    for failures, bound in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        delays = [default_backoff(failures, base=2.0, cap=10.0) for _ in range(2000)]
        assert all(0 <= delay <= bound for delay in delays)
        assert max(delays) > 0.9 * bound and min(delays) < 0.1 * bound  # spread, not fixed


@IN_A_TRANSACTION
def test_retry_delay_follows_the_task_and_the_settings():
    task = tasks.always_fails.using(max_attempts=5)
    exc = ConnectionError("x")
    # The custom backoff (_no_delay) wins over any setting.
    assert retry_delay(task, None, 1, exc) == 0
    # Attempts used up (here by the stored per-call option): final.
    assert retry_delay(task, {"max_attempts": 2}, 2, exc) is None
    assert retry_delay(task, {"max_attempts": 3}, 2, exc) == 0
    assert retry_delay(tasks.always_fails, None, 1, exc) is None  # max_attempts=1
    # Never retried: a cancellation, or an exception outside retry_on.
    assert retry_delay(task, None, 1, RunCancelled("stop")) is None
    assert retry_delay(tasks.picky, None, 1, ValueError("x")) is None
    assert retry_delay(tasks.picky, None, 1, tasks.Transient("x")) == 0
    # The default backoff reads TASKMILL_RETRY_BACKOFF_BASE/CAP unless the task sets them.
    plain = tasks.jittered.using()
    object.__setattr__(plain, "backoff_base", None)
    object.__setattr__(plain, "backoff_cap", None)
    with override_settings(TASKMILL_RETRY_BACKOFF_BASE=0.001, TASKMILL_RETRY_BACKOFF_CAP=0.002):
        assert all(0 <= retry_delay(plain, None, 2, exc) <= 0.002 for _ in range(200))
    assert all(0 <= retry_delay(tasks.jittered, None, 2, exc) <= 0.3 for _ in range(200))


@IN_A_TRANSACTION
def test_a_backoff_that_raises_means_no_retry():
    def broken(failures, exc):
        raise ZeroDivisionError

    task = tasks.flaky.using()
    object.__setattr__(task, "backoff", broken)
    assert retry_delay(task, None, 1, ConnectionError()) is None


@IN_A_TRANSACTION
def test_a_negative_delay_is_now():
    task = tasks.flaky.using()
    object.__setattr__(task, "backoff", lambda failures, exc: -5)
    assert retry_delay(task, None, 1, ConnectionError()) == 0.0
