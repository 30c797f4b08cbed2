"""Snooze and cancel from inside a task (issue 24), in real worker processes: a snooze uses no
attempt of max_attempts and never reaches the backoff, moves the attempt (the fencing token)
on, counts apart up to max_snoozes, waits its delay and frees its limit slot; a cancel ends
the run CANCELLED with no retry and one on_failure callback. On a task thread, the event
loop, in a child process and in an atomic task's transaction alike."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path

import pytest
from django.utils import timezone

import taskmill
from taskmill.compat import DECORATOR_TAKES_OPTIONS, InvalidTask, TaskResultStatus
from taskmill.exceptions import RunCancelled, Snooze, TooManySnoozes
from taskmill.models import Run, RunStats, RunStatus
from taskmill.rollups import WINDOWS, series
from taskmill.tasks import Task
from tests.conftest import read_records, wait_until
from tests.testapp import snooze_tasks, tasks
from tests.testapp.models import Effect
from tests.testapp.snooze_tasks import VARIANTS

pytestmark = pytest.mark.django_db(transaction=True)
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

CANCELLED_PATH = "taskmill.exceptions.RunCancelled"
NOTE_FAILURE = "tests.testapp.tasks.note_failure"


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def attempts(record_dir: Path, kind: str, run_id: str) -> list[tuple[int, str, dt.datetime]]:
    """(attempt, action, time) of each ``kind`` ("start" or "end") recorded for a run."""
    found = []
    for line in read_records(record_dir):
        parts = line.split()
        if parts[0] == kind and parts[1] == run_id:
            found.append((int(parts[2]), parts[3], dt.datetime.fromisoformat(parts[4])))
    return sorted(found)


def backoffs(record_dir: Path, run_id: str) -> list[tuple[int, int]]:
    """(failures, attempts) that each backoff call of a run was given, in order."""
    found = []
    for line in read_records(record_dir):
        parts = line.split()
        if parts[0] == "backoff" and parts[1] == run_id:
            found.append((int(parts[2]), int(parts[3])))
    return sorted(found)


def callbacks_of(result) -> list[Run]:
    return list(Run.objects.filter(task_path=NOTE_FAILURE, args=[result.id]))


def test_snoozes_and_cancels_end_their_attempts_as_asked_wherever_the_body_runs(
    run_worker, record_dir
):
    # Every runner: a task thread, the event loop, a child process, an atomic transaction.
    # Two worker processes: a snoozed run may come back to either.
    snoozed = {name: task.enqueue("SSSSSO") for name, task in VARIANTS.items()}
    cancelled = {name: task.enqueue("C") for name, task in VARIANTS.items()}
    dependent = tasks.noop.using(depends_on=[cancelled["thread"]]).enqueue()
    run_worker("--burst", "--no-scheduler", "--processes", "2", "--concurrency", "2")

    for name, result in snoozed.items():
        run = row(result)
        assert (run.status, run.errors, run.snoozes, run.attempt) == (
            RunStatus.SUCCESSFUL,
            [],
            5,
            6,
        ), name
        assert run.return_value == 6, name  # context.attempt: snoozed attempts count there
        assert [(n, action) for n, action, _ in attempts(record_dir, "start", result.id)] == [
            (1, "S"),
            (2, "S"),
            (3, "S"),
            (4, "S"),
            (5, "S"),
            (6, "O"),
        ], name
        result.refresh()
        # Django's TaskResult: attempts made (one worker id each), snoozed ones included;
        # no error.
        assert (result.status, result.attempts, result.errors) == (
            TaskResultStatus.SUCCESSFUL,
            6,
            [],
        ), name
        assert backoffs(record_dir, result.id) == [], name  # no backoff for a snooze
        assert callbacks_of(result) == [], name

    for name, result in cancelled.items():
        run = row(result)
        # max_attempts=3, and a ConnectionError would retry: a cancel never does.
        assert (run.status, run.attempt, run.snoozes) == (RunStatus.CANCELLED, 1, 0), name
        assert run.finished_at is not None, name
        # Recorded as a cancel's: RunCancelled, the reason the task gave.
        assert run.errors == [
            {
                "exception_class_path": CANCELLED_PATH,
                "traceback": "RunCancelled: attempt 1 found nothing to do\n",
            }
        ], name
        result.refresh()
        assert result.status == TaskResultStatus.FAILED  # Django's name for CANCELLED
        assert [e.exception_class_path for e in result.errors] == [CANCELLED_PATH]
        assert taskmill.run_status(result) == RunStatus.CANCELLED
        # on_failure follows a cancel, once; the burst worker ran it too.
        (callback,) = callbacks_of(result)
        assert callback.status == RunStatus.SUCCESSFUL, name

    # Its dependents follow as for any cancel.
    run = row(dependent)
    assert run.status == RunStatus.CANCELLED
    assert [e["exception_class_path"] for e in run.errors] == [
        "taskmill.exceptions.DependencyFailed"
    ]
    assert (
        f"run {cancelled['thread'].id}, which this run depends on, was cancelled"
        in (run.errors[0]["traceback"])
    )

    # The atomic task's snoozes rolled back what their attempts wrote; the success kept its
    # row; the cancel kept none.
    atomic = snoozed["atomic"].id
    assert sorted(Effect.objects.values_list("name", flat=True)) == [f"{atomic}-6"]


@pytest.mark.parametrize("plan", ["SSSSSF", "SFSSFSSF"])
def test_snoozes_use_no_attempt_and_the_backoff_never_sees_them(start_worker, record_dir, plan):
    # max_attempts=3: five snoozes, and then (or in between) failures every time.
    sync = snooze_tasks.planned.enqueue(plan)
    in_child = snooze_tasks.child_planned.enqueue(plan)
    worker = start_worker("--no-scheduler", "--poll-interval", "0.05")
    wait_until(
        lambda: all(row(r).status == RunStatus.FAILED for r in (sync, in_child)),
        60,
        message=lambda: worker.output,
    )

    for result in (sync, in_child):
        run = row(result)
        # Exactly three failing attempts, as if it had never snoozed: eight attempts in all.
        assert (run.status, run.attempt, run.snoozes) == (RunStatus.FAILED, 8, 5)
        assert [e["exception_class_path"] for e in run.errors] == ["builtins.ConnectionError"] * 3
        starts = attempts(record_dir, "start", result.id)
        assert "".join(action for _, action, _ in starts) == (plan + "FFF")[:8]
        failing = [n for n, action, _ in starts if action == "F"]
        assert len(failing) == 3 and failing[-1] == 8
        for n, error in zip(failing, run.errors, strict=True):
            assert f"attempt {n} failed" in error["traceback"]
        # The backoff saw failures 1 and 2 (not called on the final one), whatever the snoozes
        # in between; Django's task_result.attempts counted every attempt made.
        assert backoffs(record_dir, result.id) == [(1, failing[0]), (2, failing[1])]
        # ...and its delays, 0.2 s per failure so far, were waited after each failure.
        ends = {n: at for n, _, at in attempts(record_dir, "end", result.id)}
        begins = {n: at for n, _, at in starts}
        for failures, n in enumerate(failing[:2], start=1):
            assert begins[n + 1] - ends[n] >= dt.timedelta(seconds=0.2 * failures), (n, starts)
        # The final failure is a failure: on_failure once.
        assert len(callbacks_of(result)) == 1


def test_a_snooze_past_max_snoozes_fails_the_run_clearly(run_worker, record_dir):
    per_call = snooze_tasks.planned.using(max_snoozes=3).enqueue("S")  # snoozes for ever
    declared = snooze_tasks.snoozes_twice_at_most.enqueue("S")  # max_snoozes=2 on the task
    none_allowed = snooze_tasks.planned.using(max_snoozes=0).enqueue("SO")
    assert row(per_call).options == {"max_snoozes": 3}  # stored like max_attempts
    assert row(declared).options is None
    run_worker("--burst", "--no-scheduler")

    for result, limit in ((per_call, 3), (declared, 2), (none_allowed, 0)):
        run = row(result)
        # Failed for good at once, though max_attempts=3 would have retried a failure.
        assert (run.status, run.snoozes, run.attempt) == (RunStatus.FAILED, limit, limit + 1)
        (error,) = run.errors
        assert error["exception_class_path"] == "taskmill.exceptions.TooManySnoozes"
        assert f"snoozed {limit} times, max_snoozes is {limit}" in error["traceback"]
        # Where the task snoozed is in the traceback, as the cause.
        assert "raise taskmill.Snooze(delay)" in error["traceback"]
        result.refresh()
        assert result.status == TaskResultStatus.FAILED
        assert backoffs(record_dir, result.id) == []
    assert len(callbacks_of(per_call)) == 1  # planned's on_failure
    # The charts count the snoozes apart: no retry among them, nothing failed but the three.
    ended = Counter()
    for status, count in RunStats.objects.values_list("status", "count"):
        ended[status] += count
    assert (ended["SNOOZED"], ended["READY"], ended["FAILED"]) == (5, 0, 3)
    points = series(WINDOWS["hour"])
    shown = [sum(point.counts[name] for point in points) for name in ("snoozed", "retried")]
    assert shown == [5, 0]


def test_a_snoozed_run_waits_for_its_delay(start_worker, record_dir):
    result = snooze_tasks.planned.enqueue("SO", delay=2.0)
    worker = start_worker("--no-scheduler", "--poll-interval", "0.05")
    wait_until(
        lambda: row(result).snoozes == 1, 30, message=lambda: f"the snooze:\n{worker.output}"
    )
    run = row(result)
    # Back READY, not due: outside the claim index until its time; nothing final, no error.
    assert (run.status, run.due, run.attempt, run.errors) == (RunStatus.READY, False, 1, [])
    assert (run.worker_id, run.lease_expires_at, run.finished_at) == ("", None, None)
    ((_, _, ended),) = attempts(record_dir, "end", result.id)
    assert dt.timedelta(seconds=2) <= run.available_at - ended < dt.timedelta(seconds=3)
    result.refresh()
    assert (result.status, result.errors) == (TaskResultStatus.READY, [])

    # Not claimed before its time: looked at again and again until just before it...
    def still_snoozing_until_its_time() -> bool:
        now = row(result)
        assert (now.status, now.attempt) == (RunStatus.READY, 1), worker.output
        return timezone.now() >= run.available_at - dt.timedelta(seconds=0.2)

    wait_until(still_snoozing_until_its_time, 10, interval=0.05)
    # ...and claimed after it.
    wait_until(lambda: row(result).status == RunStatus.SUCCESSFUL, 30, message=worker.output)
    (_, (second, action, began)) = attempts(record_dir, "start", result.id)
    assert (second, action) == (2, "O") and began >= run.available_at
    assert (row(result).attempt, row(result).snoozes) == (2, 1)


def test_a_snoozed_run_frees_its_limit_slot(start_worker, record_dir):
    # concurrency_limit=1: the first run holds the task's one slot, the second waits for it.
    sleeper = snooze_tasks.one_at_a_time.enqueue("SO", delay=3600.0)
    waiting = snooze_tasks.one_at_a_time.enqueue("O")
    worker = start_worker("--no-scheduler", "--poll-interval", "0.05", "--concurrency", "2")
    # The snooze gives the slot back as a retry does: the second runs now, not in an hour.
    wait_until(
        lambda: row(waiting).status == RunStatus.SUCCESSFUL,
        15,
        message=lambda: f"the waiting run to get the slot:\n{worker.output}",
    )
    run = row(sleeper)
    assert (run.status, run.due, run.snoozes, run.attempt) == (RunStatus.READY, False, 1, 1)


# -- the API, refused clearly ---------------------------------------------------------------------


@IN_A_TRANSACTION
@pytest.mark.parametrize(
    ("delay", "error", "message"),
    [
        (-1, ValueError, "Snooze delay must not be negative, not -1"),
        (dt.timedelta(seconds=-1), ValueError, "must not be negative"),
        (float("nan"), ValueError, "must be a finite number of seconds, not nan"),
        (float("inf"), ValueError, "must be a finite number of seconds, not inf"),
        (1e300, ValueError, "is too long"),
        (dt.timedelta(days=999_999_999), ValueError, "ends past the year 9999"),
        (True, TypeError, "Snooze takes seconds or a timedelta, not True"),
        ("60", TypeError, "Snooze takes seconds or a timedelta, not '60'"),
        (None, TypeError, "not None"),
    ],
)
def test_a_snooze_delay_that_cannot_be_is_refused_where_it_is_raised(delay, error, message):
    with pytest.raises(error, match=message):
        taskmill.Snooze(delay)


@IN_A_TRANSACTION
def test_the_api_names():
    assert taskmill.Snooze is Snooze and taskmill.TooManySnoozes is TooManySnoozes
    assert taskmill.Snooze(90).delay == dt.timedelta(seconds=90)
    assert taskmill.Snooze(dt.timedelta(minutes=1)).delay == dt.timedelta(minutes=1)
    assert taskmill.Snooze(0.5).delay == dt.timedelta(seconds=0.5)
    assert str(taskmill.Snooze(90)) == "snoozed for 90s"
    # A cancel is a cancellation: whatever knows RunCancelled is final knows it.
    assert isinstance(taskmill.Cancel("why"), RunCancelled)
    assert taskmill.Cancel("why").reason == "why"
    with pytest.raises(TypeError, match="Cancel takes a reason as text"):
        taskmill.Cancel(42)
    # Errors are TaskmillErrors; a snooze is not an error.
    assert issubclass(TooManySnoozes, taskmill.TaskmillError)
    assert not issubclass(Snooze, taskmill.TaskmillError)
    assert snooze_tasks.planned.max_snoozes == 100  # the default
    assert snooze_tasks.snoozes_twice_at_most.max_snoozes == 2


@IN_A_TRANSACTION
@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None])
def test_max_snoozes_that_cannot_be_is_refused(value):
    message = re.escape(f"max_snoozes must be an integer >= 0, not {value!r}")
    with pytest.raises(InvalidTask, match=message):
        taskmill.task(max_snoozes=value)(_plain)
    with pytest.raises(InvalidTask, match="max_snoozes must be an integer >= 0"):
        snooze_tasks.planned.using(max_snoozes=value)


@IN_A_TRANSACTION
@pytest.mark.skipif(
    not DECORATOR_TAKES_OPTIONS, reason="only Django 6.1's task() passes options to backends"
)
def test_djangos_own_decorator_takes_max_snoozes():
    from django.tasks import task as django_task

    made = django_task(max_snoozes=7)(_plain)
    assert isinstance(made, Task) and made.max_snoozes == 7
    with pytest.raises(InvalidTask, match="max_snoozes must be an integer >= 0, not -1"):
        django_task(max_snoozes=-1)(_plain)


def _plain() -> None:
    """A function made a task by the refusal tests (never registered: refused)."""
