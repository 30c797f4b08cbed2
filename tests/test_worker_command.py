"""``manage.py taskmill worker``: every flag, signals and a lost connection, in real processes."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from taskmill.compat import TaskResultStatus
from taskmill.models import Run
from tests.conftest import kill_other_connections, only_on, read_records, wait_until
from tests.faults.db_faults import POOLED
from tests.testapp import tasks

# A real worker process per test: the LTS leg leaves them to the main leg (test_smoke runs a
# worker on the backport). What the command line does (flags, signals, reload) does not depend
# on the database, and the claim under it is tested on every database elsewhere: those tests
# run on SQLite only; the ones about a database (a lost connection, NOTIFY, missing tables)
# run on each.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
command_line = only_on("sqlite", "the command line's behaviour does not depend on the database")


def status(result) -> str:
    return Run.objects.get(pk=int(result.id)).status


def statuses(results) -> list[str]:
    return [status(result) for result in results]


@command_line
def test_burst_drains_the_queue_and_exits(run_worker):
    results = tasks.add.enqueue_many([((i, i), {}) for i in range(20)])
    deferred = tasks.noop.using(run_after=dt.timedelta(hours=1)).enqueue()
    worker = run_worker("--burst")
    assert statuses(results) == ["SUCCESSFUL"] * 20
    assert status(deferred) == "READY"
    assert "started" in worker.output and "stopped after 20 task(s)" in worker.output


@command_line
def test_queue_flag_is_repeatable(run_worker):
    default = tasks.noop.enqueue()
    email = tasks.send_email.enqueue("x@example.com")
    high = tasks.noop.using(queue_name="high").enqueue()
    run_worker("--burst", "--queue", "emails", "--queue", "high")
    assert statuses([default, email, high]) == ["READY", "SUCCESSFUL", "SUCCESSFUL"]


@command_line
def test_exclude_queue_flag(run_worker):
    default = tasks.noop.enqueue()
    email = tasks.send_email.enqueue("x@example.com")
    low = tasks.noop.using(queue_name="low").enqueue()
    run_worker("--burst", "--exclude-queue", "emails", "--exclude-queue", "low")
    assert statuses([default, email, low]) == ["SUCCESSFUL", "READY", "READY"]


@command_line
def test_concurrency_runs_that_many_tasks_at_once(run_worker):
    together = tasks.sync_rendezvous.enqueue_many([(("c3", 3), {})] * 3)
    run_worker("--burst", "--concurrency", "3")
    assert statuses(together) == ["SUCCESSFUL"] * 3


@command_line
def test_concurrency_is_a_limit(run_worker):
    # Three tasks that each wait (1 s at most) for all three to be running at once: with
    # two slots they cannot meet, so every one of them gives up.
    apart = tasks.sync_rendezvous.enqueue_many([(("c2", 3), {"timeout": 1.0})] * 3)
    run_worker("--burst", "--concurrency", "2")
    assert statuses(apart) == ["FAILED"] * 3


@command_line
def test_max_tasks_exits_after_that_many(run_worker):
    results = tasks.noop.enqueue_many([((), {})] * 5)
    run_worker("--max-tasks", "2")
    assert sorted(statuses(results)) == ["READY"] * 3 + ["SUCCESSFUL"] * 2


@command_line
def test_label_names_the_worker(run_worker):
    result = tasks.noop.enqueue()
    run_worker("--burst", "--label", "mailer-1")
    result.refresh()
    assert len(result.worker_ids) == 1
    assert result.worker_ids[0].startswith("mailer-1@")


@command_line
def test_poll_interval_picks_up_a_deferred_run_when_it_is_due(start_worker):
    worker = start_worker("--poll-interval", "0.1")
    worker.wait_for_output("started")
    due = timezone.now() + dt.timedelta(seconds=1)
    result = tasks.noop.using(run_after=due).enqueue()
    wait_until(lambda: status(result) == "SUCCESSFUL", 15, message="the deferred run")
    result.refresh()
    assert result.started_at >= due
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


@command_line
def test_a_deferred_run_starts_on_time_whatever_the_poll_interval(start_worker):
    # With an hour between polls, only the once-a-second staging can start it promptly.
    worker = start_worker("--poll-interval", "3600", "--no-scheduler")
    worker.wait_for_output("started")
    due = timezone.now() + dt.timedelta(seconds=2)
    result = tasks.noop.using(run_after=due).enqueue()
    wait_until(lambda: status(result) == "SUCCESSFUL", 20, message="the deferred run")
    result.refresh()
    assert result.started_at >= due
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


@command_line
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queue", "nope"], "Unknown queue 'nope'"),
        (["--exclude-queue", "nope"], "Unknown queue 'nope'"),
        (["--concurrency", "0"], "must be at least 1"),
        (["--max-tasks", "-3"], "must be at least 1"),
        (["--poll-interval", "0"], "must be more than 0"),
        (["--shutdown-timeout", "-1"], "must be 0 or more"),
        (["--backend", "nope"], "There is no TASKS backend named 'nope'"),
    ],
)
def test_bad_arguments_are_refused_clearly(run_worker, args, message):
    worker = run_worker(*args, "--burst", expect_code=None)
    assert worker.process.returncode != 0
    assert message in worker.output
    assert "Traceback" not in worker.output


@command_line
def test_reload_restarts_the_worker_when_code_changes(start_worker):
    worker = start_worker(reload=True)
    worker.wait_for_output("Worker", count=1)
    worker.wait_for_output("started")
    watched = Path(tasks.__file__)
    # Touch a module the worker imported; the autoreloader restarts it.
    wait_until(
        lambda: _touch(watched) or sum("started:" in line for line in worker.lines) >= 2,
        30,
        interval=0.5,
        message=lambda: f"a restart after touching {watched}:\n{worker.output}",
    )


def _touch(path: Path) -> None:
    os.utime(path, None)


@command_line
def test_sigterm_lets_the_running_task_finish_and_returns_unstarted_runs(
    start_worker, tmp_path, record_dir
):
    gate = tmp_path / "gate"
    blocked = tasks.wait_for_file.enqueue(str(gate))
    queued = tasks.noop.enqueue_many([((), {})] * 3)
    worker = start_worker("--concurrency", "1")
    wait_until(lambda: any("waiting" in line for line in read_records(record_dir)), 20)
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("stopping")
    worker.wait_for_output("unstarted run(s) to the queue")
    assert worker.process.poll() is None, "the worker waits for its running task"
    assert status(blocked) == "RUNNING"
    gate.touch()
    assert worker.wait(30) == 0
    blocked.refresh()
    assert blocked.status == TaskResultStatus.SUCCESSFUL
    for run in Run.objects.filter(pk__in=[int(r.id) for r in queued]):
        assert (run.status, run.attempt, run.worker_ids, run.started_at) == ("READY", 0, [], None)


@command_line
def test_a_second_signal_exits_at_once_and_returns_the_running_run(
    start_worker, tmp_path, record_dir
):
    blocked = tasks.wait_for_file.enqueue(str(tmp_path / "never"), 600)
    worker = start_worker()
    wait_until(lambda: read_records(record_dir), 20)
    worker.signal(signal.SIGINT)
    worker.wait_for_output("stopping")
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 1
    run = Run.objects.get(pk=int(blocked.id))
    # It did start, so the attempt counts; it is ready to run again.
    assert (run.status, run.attempt, run.worker_id) == ("READY", 1, "")


@command_line
def test_shutdown_timeout_returns_a_task_that_outlives_it(start_worker, tmp_path, record_dir):
    blocked = tasks.wait_for_file.enqueue(str(tmp_path / "never"), 600)
    worker = start_worker("--shutdown-timeout", "0.5")
    wait_until(lambda: read_records(record_dir), 20)
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert "Returned 1 unfinished run(s) to the queue" in worker.output
    assert status(blocked) == "READY"


def test_the_worker_survives_a_lost_database_connection(start_worker):
    if POOLED:
        pytest.skip(
            "through a transaction pooler a server session lost between transactions is "
            "replaced by the pooler: the process never sees it (the fault suite's restarts "
            "and cuts run against PostgreSQL itself)"
        )
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection to lose")
    first = tasks.add.enqueue(1, 1)
    worker = start_worker("--poll-interval", "0.1")
    wait_until(lambda: status(first) == "SUCCESSFUL", 20)
    assert kill_other_connections() >= 1
    second = tasks.add.enqueue(2, 2)
    wait_until(lambda: status(second) == "SUCCESSFUL", 30, message=lambda: worker.output)
    assert "Database error" in worker.output
    assert worker.process.poll() is None
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_postgresql_notify_wakes_an_idle_worker_at_once(start_worker):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    # A poll interval of an hour: only the notification can explain a prompt start.
    worker = start_worker("--poll-interval", "3600", "--verbosity", "2", "--no-scheduler")
    worker.wait_for_output("Listening for NOTIFY")
    result = tasks.add.enqueue(3, 4)
    wait_until(lambda: status(result) == "SUCCESSFUL", 20, message=lambda: worker.output)
    assert "NOTIFY received for queue 'default'" in worker.output
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_worker_refuses_a_database_without_its_tables(start_worker, tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("an empty database file is SQLite's; elsewhere it would not exist")
    worker = start_worker(env={"TASKMILL_TEST_DB_NAME": str(tmp_path / "empty.sqlite3")})
    assert worker.wait(60) != 0
    assert "missing" in worker.output and "manage.py migrate" in worker.output
