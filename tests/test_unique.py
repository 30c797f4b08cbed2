"""Unique runs: at most one READY/WAITING/RUNNING run per (task, key), held by the
database's unique index, under concurrent enqueues from threads and processes."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading

import pytest
from django.db import connection, transaction

from taskmill.compat import TaskResultStatus
from taskmill.models import ACTIVE_STATUSES, Run, RunStatus
from tests.conftest import ROOT, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)
# Tests that run no worker: rolled back at the end, much cheaper than a flush.
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

UNIQUE_JOB = "tests.testapp.tasks.unique_job"


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def active(task_path: str = UNIQUE_JOB) -> list[Run]:
    return list(Run.objects.filter(task_path=task_path, status__in=ACTIVE_STATUSES))


def test_a_duplicate_gets_the_run_already_there_until_it_finishes(run_worker):
    first = tasks.unique_job.enqueue("a")
    again = tasks.unique_job.enqueue("a")
    assert again.id == first.id and again.status == TaskResultStatus.READY
    # The key is the task and its arguments: keyword order does not matter, values do.
    with_kwargs = tasks.unique_job.enqueue("a", x=1, y=2)
    assert tasks.unique_job.enqueue("a", y=2, x=1).id == with_kwargs.id
    other = tasks.unique_job.enqueue("b")
    assert len({first.id, with_kwargs.id, other.id}) == 3
    # An explicit unique_key replaces the arguments; on a task that is not unique too.
    keyed = tasks.unique_job.using(unique_key="order-7").enqueue("c")
    assert tasks.unique_job.using(unique_key="order-7").enqueue("d").id == keyed.id
    assert tasks.unique_job.enqueue("c").id != keyed.id  # keyed by its arguments instead
    failing = tasks.fail.using(unique_key="f").enqueue()
    assert tasks.fail.using(unique_key="f").enqueue().id == failing.id
    assert tasks.add.enqueue(1, 2).id != tasks.add.enqueue(1, 2).id  # not unique at all
    # Same key, another task: independent.
    assert tasks.step.using(unique_key="order-7").enqueue("p").id != keyed.id
    count = Run.objects.count()

    run_worker("--burst", "--no-scheduler")
    assert row(first).status == RunStatus.SUCCESSFUL
    assert row(failing).status == RunStatus.FAILED
    assert Run.objects.count() == count
    # Finished (successfully or not): the key is free, the next enqueue is a new run.
    fresh = tasks.unique_job.enqueue("a")
    assert fresh.id != first.id and row(fresh).status == RunStatus.READY
    assert tasks.unique_job.enqueue("a").id == fresh.id
    refailing = tasks.fail.using(unique_key="f").enqueue()
    assert refailing.id != failing.id
    assert len(active()) == 1  # fresh; the finished ones keep their key but not the lock
    assert row(first).unique_key == row(fresh).unique_key


def test_a_duplicate_of_a_running_run_gets_it(start_worker, tmp_path):
    release = tmp_path / "release"
    running = tasks.unique_wait.enqueue(str(release))
    worker = start_worker("--burst", "--no-scheduler")
    # Generous waits, and messages with the worker's output: CI, running every leg at once,
    # failed this test once without saying which step ran out of time.
    # RUNNING as Django sees it: a claimed run that a heartbeat found still waiting for its
    # body (prefetched) reads READY until a later heartbeat sees it begun; its row says
    # RUNNING all along (CI's loaded PostgreSQL leg saw a heartbeat fall in between).
    wait_until(
        lambda: tasks.unique_wait.get_result(running.id).status == TaskResultStatus.RUNNING,
        timeout=90,
        message=lambda: f"the run to start:\n{worker.output}",
    )
    duplicate = tasks.unique_wait.enqueue(str(release))
    assert (duplicate.id, duplicate.status) == (running.id, TaskResultStatus.RUNNING)
    release.touch()
    assert worker.wait(90) == 0, worker.output
    assert row(running).status == RunStatus.SUCCESSFUL, (row(running).errors, worker.output)
    assert tasks.unique_wait.enqueue(str(release)).id != running.id


@IN_A_TRANSACTION
def test_a_waiting_run_holds_its_key():
    later = tasks.add.using(run_after=dt.timedelta(hours=1)).enqueue(1, 1)
    waiting = tasks.unique_job.using(depends_on=[later]).enqueue("w")
    assert row(waiting).status == RunStatus.WAITING
    duplicate = tasks.unique_job.enqueue("w")
    assert duplicate.id == waiting.id
    assert duplicate.status == TaskResultStatus.READY  # WAITING, as Django sees it


def test_duplicates_in_one_bulk_enqueue_and_in_the_callers_transaction():
    results = tasks.unique_job.enqueue_many([(("m",), {}), (("n",), {}), (("m",), {})])
    assert results[0].id == results[2].id != results[1].id
    assert Run.objects.count() == 2
    with transaction.atomic():
        inside = tasks.unique_job.enqueue("t")
        # The duplicate's failed INSERT is rolled back to a savepoint, not the transaction.
        assert tasks.unique_job.enqueue("t").id == inside.id
        assert Run.objects.filter(pk=int(inside.id)).exists()
    assert len(active()) == 3


# A process that enqueues the same unique run as everyone else, at the same moment: it
# announces itself with a file, waits for the "go" file, enqueues and prints the run id.
ENQUEUER = """
import os, sys, time
from pathlib import Path
import django
django.setup()
from tests.testapp import tasks
barrier = Path(sys.argv[1])
(barrier / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 60
while not (barrier / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
print(tasks.unique_job.enqueue("together").id)
"""


def test_concurrent_enqueues_from_threads_and_processes_leave_one_run(subprocess_env, tmp_path):
    barrier_dir = tmp_path / "barrier"
    barrier_dir.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ENQUEUER, str(barrier_dir)],
            env=subprocess_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    threads_go = threading.Barrier(9)
    ids: list[str] = []
    failures: list[BaseException] = []

    def enqueue() -> None:
        try:
            threads_go.wait(60)
            ids.append(tasks.unique_job.enqueue("together").id)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: (
                len(list(barrier_dir.glob("ready-*"))) == 4
                or any(p.poll() is not None for p in processes)
            ),
            60,
            message="the enqueueing processes to be ready",
        )
        (barrier_dir / "go").touch()
        threads_go.wait(60)
    finally:
        for thread in threads:
            thread.join(60)
        outputs = [p.communicate(timeout=60) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        ids.append(out.strip())
    assert not failures, failures
    assert len(ids) == 12
    assert len(set(ids)) == 1, ids
    runs = active()
    assert [str(run.pk) for run in runs] == [ids[0]]
    assert Run.objects.count() == 1


@IN_A_TRANSACTION
def test_the_unique_key_is_stored_on_the_run():
    keyed = tasks.unique_job.using(unique_key="k-1").enqueue("x")
    by_args = tasks.unique_job.enqueue("x")
    plain = tasks.add.enqueue(1, 2)
    assert row(keyed).unique_key == "k-1"
    assert row(by_args).unique_key.startswith("args:") and len(row(by_args).unique_key) == 69
    assert row(plain).unique_key is None
