"""Dependencies between runs: ``.using(depends_on=[...])`` inserts a WAITING run, released
when all it depends on succeeded, cancelled (naming the culprit) when one fails for good."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from taskmill.compat import InvalidTask, TaskResultStatus, task_enqueued
from taskmill.models import Run, RunDependency, RunStatus
from tests.conftest import read_records, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
# Tests that run no worker: rolled back at the end, much cheaper than a flush.
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

DEPENDENCY_FAILED = "taskmill.exceptions.DependencyFailed"


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def status(result) -> str:
    return row(result).status


def step_started(record_dir, name: str) -> dt.datetime:
    """When the step task ``name`` started, as it recorded it (a claim's started_at can be
    earlier than the task's start: the claim may wait for a lock after taking its time)."""
    (line,) = [line for line in read_records(record_dir) if line.startswith(f"step-{name} ")]
    return dt.datetime.fromisoformat(line.split()[3])


def step_order(record_dir) -> list[str]:
    """Names of the steps that ran, in the order they started."""
    lines = [line.split() for line in read_records(record_dir) if line.startswith("step-")]
    return [parts[0][5:] for parts in sorted(lines, key=lambda parts: parts[3])]


def test_dependents_run_after_success_and_are_cancelled_after_failure(run_worker, record_dir):
    # Success, after a retry: A -> B -> C, released one after the other.
    a = tasks.flaky.enqueue(1)  # fails once, succeeds on attempt 2
    b = tasks.step.using(depends_on=[a]).enqueue("b")
    c = tasks.step.using(depends_on=[b.id]).enqueue("c")  # an id string works too
    # Failure: F fails for good; G depends on it, H on G, K on an ok run and on F.
    f = tasks.fail.enqueue("for good")
    g = tasks.step_with_callback.using(depends_on=[f]).enqueue("g")  # on_failure
    h = tasks.step.using(depends_on=[g]).enqueue("h")
    ok = tasks.add.enqueue(1, 1)
    k = tasks.step.using(depends_on=[ok, f]).enqueue("k")
    for waiting in (b, c, g, h, k):
        assert status(waiting) == RunStatus.WAITING
        assert waiting.status == TaskResultStatus.READY  # what Django's API calls it
        waiting.refresh()
        assert waiting.status == TaskResultStatus.READY
    assert RunDependency.objects.filter(run_id=int(k.id)).count() == 2
    assert row(a).has_dependents and row(f).has_dependents and not row(c).has_dependents

    run_worker("--burst", "--no-scheduler")

    assert [status(r) for r in (a, b, c)] == [RunStatus.SUCCESSFUL] * 3
    assert step_order(record_dir) == ["b", "c"]
    assert step_started(record_dir, "b") >= row(a).finished_at and row(b).attempt == 1
    assert step_started(record_dir, "c") >= row(b).finished_at
    assert row(a).attempt == 2  # b waited through a's retry instead of being cancelled

    assert status(f) == RunStatus.FAILED
    for cancelled, culprit, word in [(g, f, "failed"), (h, g, "was cancelled"), (k, f, "failed")]:
        run = row(cancelled)
        assert run.status == RunStatus.CANCELLED, cancelled
        assert run.attempt == 0 and run.started_at is None and run.finished_at is not None
        assert [e["exception_class_path"] for e in run.errors] == [DEPENDENCY_FAILED]
        assert f"run {culprit.id}, which this run depends on, {word}" in run.errors[0]["traceback"]
        cancelled.refresh()
        assert cancelled.status == TaskResultStatus.FAILED  # CANCELLED, as Django sees it
        assert cancelled.errors[0].exception_class_path == DEPENDENCY_FAILED
    # A cancelled run's on_failure follows it, once, with its id.
    callbacks = Run.objects.filter(task_path="tests.testapp.tasks.note_failure")
    assert [(c.args, c.status) for c in callbacks] == [([g.id], RunStatus.SUCCESSFUL)]


def test_a_dependent_added_while_its_dependency_runs(
    start_worker, run_worker, tmp_path, record_dir
):
    release = tmp_path / "release"
    running = tasks.wait_for_file.enqueue(str(release))
    later = tasks.add.using(run_after=dt.timedelta(hours=1)).enqueue(2, 2)
    worker = start_worker("--burst", "--no-scheduler")
    wait_until(lambda: status(running) == RunStatus.RUNNING, message="the run to start")
    # Enqueued while the run it depends on is RUNNING (its worker claimed it without
    # dependents): the finish must still release it.
    late = tasks.step.using(depends_on=[running]).enqueue("late")
    both = tasks.step.using(depends_on=[running, later]).enqueue("both")
    assert status(late) == status(both) == RunStatus.WAITING
    release.touch()
    assert worker.wait(30) == 0, worker.output
    assert status(running) == RunStatus.SUCCESSFUL
    assert status(late) == RunStatus.SUCCESSFUL
    # All of them must succeed: one still to run keeps it waiting.
    assert status(both) == RunStatus.WAITING
    Run.objects.filter(pk=int(later.id)).update(
        run_after=None, available_at=timezone.now(), due=True
    )
    run_worker("--burst", "--no-scheduler")
    assert status(later) == RunStatus.SUCCESSFUL
    assert status(both) == RunStatus.SUCCESSFUL
    assert step_started(record_dir, "both") >= row(later).finished_at


def test_dependents_enqueued_while_their_dependency_finishes_all_run(start_worker, tmp_path):
    # Threads keep enqueueing dependents of a run before, while and after it finishes: each
    # must be released, whichever side of the finish its enqueue falls on.
    release = tmp_path / "release"
    dependency = tasks.wait_for_file.enqueue(str(release))
    worker = start_worker("--no-scheduler", "--poll-interval", "0.05", "--concurrency", "4")
    wait_until(lambda: status(dependency) == RunStatus.RUNNING, message="the run to start")
    ids: list[str] = []
    failures: list[BaseException] = []
    started = threading.Barrier(5)

    def enqueue(thread: int) -> None:
        try:
            started.wait(30)
            for n in range(12):
                result = tasks.step.using(depends_on=[dependency]).enqueue(f"t{thread}-{n}")
                ids.append(result.id)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    started.wait(30)
    wait_until(lambda: len(ids) >= 4, message="the first dependents")
    release.touch()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert len(ids) == 48
    dependents = Run.objects.filter(pk__in=[int(run_id) for run_id in ids])
    wait_until(
        lambda: set(dependents.values_list("status", flat=True)) == {RunStatus.SUCCESSFUL},
        30,
        message="every dependent to succeed",
    )
    worker.signal()
    assert worker.wait(30) == 0, worker.output


@IN_A_TRANSACTION
def test_depending_on_finished_runs_settles_at_once():
    succeeded = tasks.add.enqueue(1, 2)
    failed = tasks.add.enqueue(3, 4)
    cancelled = tasks.add.enqueue(5, 6)
    now = timezone.now()
    Run.objects.filter(pk=int(succeeded.id)).update(status="SUCCESSFUL", finished_at=now)
    Run.objects.filter(pk=int(failed.id)).update(status="FAILED", finished_at=now)
    Run.objects.filter(pk=int(cancelled.id)).update(status="CANCELLED", finished_at=now)

    released = tasks.step.using(depends_on=[succeeded]).enqueue("released")
    assert released.status == TaskResultStatus.READY
    assert status(released) == RunStatus.READY and row(released).due

    doomed = tasks.step.using(depends_on=[succeeded, failed]).enqueue("doomed")
    assert doomed.status == TaskResultStatus.FAILED
    assert doomed.errors[0].exception_class_path == DEPENDENCY_FAILED
    assert f"run {failed.id}, which this run depends on, failed" in doomed.errors[0].traceback
    assert status(doomed) == RunStatus.CANCELLED

    also = tasks.step_with_callback.using(depends_on=[cancelled]).enqueue("also")
    assert status(also) == RunStatus.CANCELLED
    assert (
        f"run {cancelled.id}, which this run depends on, was cancelled"
        in (row(also).errors[0]["traceback"])
    )
    callbacks = Run.objects.filter(task_path="tests.testapp.tasks.note_failure")
    assert [c.args for c in callbacks] == [[also.id]]

    # A deferred dependent released at once stays deferred (not due) until its time.
    deferred = tasks.step.using(depends_on=[succeeded], run_after=dt.timedelta(hours=1)).enqueue(
        "deferred"
    )
    assert status(deferred) == RunStatus.READY and not row(deferred).due


@IN_A_TRANSACTION
def test_unknown_or_malformed_dependencies_are_refused():
    exists = tasks.add.enqueue(1, 1)
    count = Run.objects.count()
    enqueued = []

    def on_enqueued(sender, task_result, **kwargs):
        enqueued.append(task_result.id)

    task_enqueued.connect(on_enqueued)
    try:
        with pytest.raises(InvalidTask, match=r"runs that do not exist: \[999999\]"):
            tasks.step.using(depends_on=[exists, 999999]).enqueue("x")
    finally:
        task_enqueued.disconnect(on_enqueued)
    assert enqueued == []  # no signal for a run that was never enqueued
    with pytest.raises(InvalidTask, match="depends_on takes task results or their ids"):
        tasks.step.using(depends_on=["not-an-id"])
    with pytest.raises(InvalidTask, match="depends_on takes task results or their ids"):
        tasks.step.using(depends_on=[None])
    # Nothing was written by the refused enqueue, and the existing run is untouched.
    assert Run.objects.count() == count
    assert RunDependency.objects.count() == 0
    assert not row(exists).has_dependents


@IN_A_TRANSACTION
def test_the_same_dependency_twice_counts_once():
    first = tasks.add.enqueue(1, 1)
    twice = tasks.step.using(depends_on=[first, first.id, int(first.id)]).enqueue("twice")
    assert status(twice) == RunStatus.WAITING
    assert RunDependency.objects.filter(run_id=int(twice.id)).count() == 1


@IN_A_TRANSACTION
def test_the_sweep_settles_waiting_runs_nobody_settled():
    from taskmill.followups import settle_strays

    first = tasks.add.enqueue(1, 2)
    second = tasks.add.enqueue(3, 4)
    released = tasks.step.using(depends_on=[first]).enqueue("released")
    doomed = tasks.step.using(depends_on=[second]).enqueue("doomed")
    after_doomed = tasks.step.using(depends_on=[doomed]).enqueue("after")
    waiting = tasks.step.using(depends_on=[first, second]).enqueue("waits")
    # Their dependencies finish behind the finish's back, as when the worker that finished
    # them died before settling their dependents.
    now = timezone.now()
    Run.objects.filter(pk=int(first.id)).update(status="SUCCESSFUL", finished_at=now)
    assert settle_strays("default") == 1
    assert status(released) == RunStatus.READY
    assert status(waiting) == RunStatus.WAITING  # the second is still READY
    Run.objects.filter(pk=int(second.id)).update(status="FAILED", finished_at=now)
    assert settle_strays("default") == 2  # doomed, and waiting; after_doomed follows doomed
    assert status(doomed) == RunStatus.CANCELLED
    assert status(waiting) == RunStatus.CANCELLED
    assert status(after_doomed) == RunStatus.CANCELLED
    assert settle_strays("default") == 0
