"""Database trouble, for real: a database not up yet when a worker or a scheduler starts,
a session killed at the exact statement of a claim, a finish or a fire, and real deadlocks.

Everything here runs real ``manage.py taskmill`` processes against the real servers; the
faults are real (a port that refuses connections, server sessions ended from another
connection, two transactions locking rows in crossing order). What must hold: nothing lost,
nothing doubled, and the processes go on working afterwards.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from taskmill.models import Run, Schedule
from tests.conftest import FAST_LEASES, WorkerProcess, read_records, wait_until
from tests.faults.tcp_proxy import ForwardingProxy
from tests.scheduler.conftest import make_schedule
from tests.testapp import fault_tasks
from tests.testapp.models import Effect
from tests.testapp.tasks import atomic_insert, record, wait_for_file

# Real processes against each database: the main leg runs them on every database; they
# prove nothing about the Django version (scripts/test).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FINISHED = ("SUCCESSFUL", "FAILED", "CANCELLED")
# The settings variable that carries the server's port to a child process.
PORT_VARIABLE = {"postgresql": "TASKMILL_PG_PORT", "mysql": "TASKMILL_MYSQL_PORT"}


def needs_a_server() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite is a file opened in-process: no server to be away, no session to kill")


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    needs_a_server()
    settings = connection.settings_dict
    forwarder = ForwardingProxy(settings["HOST"], int(settings["PORT"]))
    yield forwarder
    forwarder.close()


@pytest.fixture
def scheduler_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    # These settings add tests.scheduler as an app: its schedules.py declares a schedule.
    return {**subprocess_env, "DJANGO_SETTINGS_MODULE": "tests.scheduler.settings"}


@pytest.fixture
def start_scheduler(scheduler_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        process = WorkerProcess([*args], {**scheduler_env, **(env or {})}, "scheduler")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def through(proxy: ForwardingProxy) -> dict[str, str]:
    """Environment that points a child process at the proxy instead of the server."""
    return {PORT_VARIABLE[connection.vendor]: str(proxy.port)}


def assert_says_it_waits(process: WorkerProcess) -> None:
    """The output names the database and says it retries, before anything got through."""
    process.wait_for_output("unreachable", count=2)
    line = next(line for line in process.lines if "unreachable" in line)
    name = connection.settings_dict["NAME"]
    assert "'default'" in line and name in line and "retrying in" in line, line


def wait_for_match(process: WorkerProcess, pattern: str) -> None:
    """Until the process's output matches ``pattern`` (case-insensitive, across lines)."""
    wait_until(
        lambda: re.search(pattern, process.output, re.IGNORECASE | re.DOTALL),
        timeout=30,
        message=lambda: f"{pattern!r} in the output:\n{process.output}",
    )


def finished(ids: list[str]) -> bool:
    return Run.objects.filter(pk__in=ids, status__in=FINISHED).count() == len(ids)


def executions(record_dir: Path) -> Counter[tuple[str, str]]:
    """(run id, attempt) -> how many times ``record`` ran it, from the side-effect logs."""
    return Counter(
        (fields[0], fields[1])
        for fields in (line.split() for line in read_records(record_dir))
        if len(fields) == 3 and fields[0].isdigit()
    )


def assert_each_ran_once_and_succeeded(ids: list[str], record_dir: Path) -> None:
    ran = executions(record_dir)
    doubled = {key: count for key, count in ran.items() if count > 1}
    assert not doubled, f"attempts executed more than once: {doubled}"
    runs = {str(run.pk): run for run in Run.objects.filter(pk__in=ids)}
    assert not [run for run in runs.values() if run.status == "RUNNING"]
    for run_id, run in runs.items():
        assert run.status == "SUCCESSFUL", (run_id, run.status, run.errors)
        assert run.return_value == run_id
        # Nothing counted as lost: the fault never cost a run an attempt.
        assert run.attempt == 1 and run.errors == [], (run_id, run.attempt, run.errors)
        assert ran[(run_id, "1")] == 1, f"run {run_id} executions: {ran}"


# -- 1. The database is not there yet when a process starts --------------------------------


def test_a_worker_started_before_its_database_waits_then_works(
    start_worker, proxy, scheduler_env, record_dir
):
    worker = start_worker("--concurrency", "2", env={**scheduler_env, **through(proxy)})
    assert_says_it_waits(worker)
    assert proxy.accepted == 0 and worker.process.poll() is None
    # Enqueued while the worker cannot see the database: done once it can.
    ids = [record.enqueue(f"meanwhile-{i}").id for i in range(5)]
    proxy.open()
    wait_until(lambda: finished(ids), timeout=30, message=lambda: f"runs done:\n{worker.output}")
    assert_each_ran_once_and_succeeded(ids, record_dir)
    # Its scheduler thread synced the code's schedules once the database was there.
    declared = wait_until(
        lambda: Schedule.objects.filter(name="declared-every-second").first(), timeout=30
    )
    wait_until(
        lambda: Run.objects.filter(schedule=declared, status="SUCCESSFUL").exists(), timeout=30
    )
    worker.signal()
    assert worker.wait(30) == 0, worker.output


def test_a_worker_started_before_its_sqlite_file_is_there_waits_then_works(
    start_worker, tmp_path, record_dir
):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's version of an absent database: its directory not mounted yet")
    real = Path(connection.settings_dict["NAME"])
    mount = tmp_path / "not-mounted-yet"  # absent: SQLite cannot open a file in it
    worker = start_worker("--no-scheduler", env={"TASKMILL_TEST_DB_NAME": str(mount / real.name)})
    worker.wait_for_output("unreachable", count=2)
    line = next(line for line in worker.lines if "unreachable" in line)
    assert "'default'" in line and real.name in line and "retrying in" in line, line
    ids = [record.enqueue(f"meanwhile-{i}").id for i in range(5)]
    mount.symlink_to(real.parent, target_is_directory=True)  # the disk comes up
    wait_until(lambda: finished(ids), timeout=30, message=lambda: f"runs done:\n{worker.output}")
    assert_each_ran_once_and_succeeded(ids, record_dir)
    worker.signal()
    assert worker.wait(30) == 0, worker.output


def test_a_scheduler_started_before_its_database_waits_then_fires(start_scheduler, proxy):
    now = timezone.now()
    schedule = make_schedule(now, kind="interval", interval=timedelta(seconds=1))
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=now)
    scheduler = start_scheduler("--max-sleep", "0.2", env=through(proxy))
    assert_says_it_waits(scheduler)
    assert not Run.objects.exists()
    proxy.open()
    wait_until(
        lambda: Run.objects.filter(schedule=schedule).exists(),
        timeout=30,
        message=lambda: f"a fire; output:\n{scheduler.output}",
    )
    # It synced its code's declarations too (after the wait, not instead of it).
    scheduler.wait_for_output("Schedules declared in code synced")
    assert Schedule.objects.filter(name="declared-every-second").exists()
    scheduler.signal()
    assert scheduler.wait(30) == 0, scheduler.output


@pytest.mark.parametrize("process", ["worker", "scheduler"])
def test_a_code_schedule_sync_cut_at_start_is_done_once_the_database_is_back(
    start_worker, start_scheduler, scheduler_env, record_dir, process
):
    needs_a_server()
    # The session dies just as the start-up sync of the code's declarations begins.
    if process == "worker":
        started = start_worker(env={**scheduler_env, **fault("sync:before")})
    else:
        started = start_scheduler("--max-sleep", "0.2", env=fault("sync:before"))
    wait_until(lambda: fault_fired(record_dir), timeout=30, message=lambda: started.output)
    declared = wait_until(
        lambda: Schedule.objects.filter(name="declared-every-second").first(),
        timeout=30,
        message=lambda: f"the declared schedule; output:\n{started.output}",
    )
    wait_until(lambda: Run.objects.filter(schedule=declared).exists(), timeout=30)
    started.wait_for_output("not synced yet")
    started.wait_for_output("Schedules declared in code synced")
    assert started.process.poll() is None, started.output
    started.signal()
    assert started.wait(30) == 0, started.output


# -- 2. The session killed at the exact statement of a claim, a finish, a fire ---------------


def fault_fired(record_dir: Path) -> bool:
    return (record_dir / "fault.fired").exists()


def lock_rows() -> tuple[int, int]:
    """Two rows for a deadlock to cross on (tests/faults/db_faults.py, ``deadlock``)."""
    return Effect.objects.create(name="lock-a").pk, Effect.objects.create(name="lock-b").pk


def fault(spec: str, rows: tuple[int, int] | None = None) -> dict[str, str]:
    env = {"TASKMILL_TEST_FAULT": spec}
    if rows:
        env["TASKMILL_TEST_FAULT_ROWS"] = ",".join(map(str, rows))
    return env


@pytest.mark.parametrize("when", ["before", "after", "deadlock"])
@pytest.mark.parametrize("spot", ["claim", "finish"])
def test_a_claim_or_finish_whose_session_dies_or_deadlocks_loses_and_doubles_nothing(
    start_worker, record_dir, spot, when
):
    needs_a_server()
    if when == "deadlock" and connection.vendor == "postgresql":
        pytest.skip(
            "PostgreSQL claims and finishes (without callbacks) in one autocommit statement: "
            "no transaction to cross; its finish transaction deadlocks in the callback test"
        )
    rows = lock_rows()
    ids = [record.enqueue(f"v{i}").id for i in range(20)]
    # Default (60 s) leases: a run stuck RUNNING would not be rescued within the test.
    worker = start_worker("--concurrency", "4", "--no-scheduler", env=fault(f"{spot}:{when}", rows))
    wait_until(
        lambda: fault_fired(record_dir), timeout=30, message=lambda: f"the fault:\n{worker.output}"
    )
    wait_until(lambda: finished(ids), timeout=30, message=lambda: f"runs done:\n{worker.output}")
    # It did lose its session, and went on (after a commit, the runs may be done before it
    # hears of the loss: wait for the line, do not expect it yet).
    worker.wait_for_output("Database error")
    if when == "deadlock":
        wait_for_match(worker, r"Database error \([^)]*deadlock")
    # Still alive and working.
    more = [record.enqueue(f"after-{i}").id for i in range(5)]
    wait_until(lambda: finished(more), timeout=30, message=lambda: f"later runs:\n{worker.output}")
    assert worker.process.poll() is None, worker.output
    assert_each_ran_once_and_succeeded(ids + more, record_dir)
    worker.signal()
    assert worker.wait(30) == 0, worker.output
    # It counts every run it finished, the one whose write it had to check included, and
    # does not take its own write for someone else's.
    assert f"stopped after {len(ids + more)} task(s)" in worker.output, worker.output
    assert "discarded" not in worker.output, worker.output


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_session_killed_mid_atomic_commit_loses_and_doubles_nothing(
    start_worker, record_dir, when
):
    needs_a_server()
    names = [f"atomic-{i}" for i in range(6)]
    ids = [atomic_insert.enqueue(name).id for name in names]
    # The atomic body and its success commit together, in the task's thread: the first
    # finish statement is that transaction's.
    worker = start_worker("--concurrency", "2", "--no-scheduler", env=fault(f"finish:{when}"))
    wait_until(lambda: fault_fired(record_dir), timeout=30, message=lambda: worker.output)
    wait_until(lambda: finished(ids), timeout=30, message=lambda: f"runs done:\n{worker.output}")
    worker.wait_for_output("trying again")  # the attempt saw the error (maybe after commit)
    for run in Run.objects.filter(pk__in=ids):
        assert run.status == "SUCCESSFUL" and run.attempt == 1, (run.pk, run.errors)
    assert sorted(Effect.objects.values_list("name", flat=True)) == names  # each body once
    callbacks = Run.objects.filter(task_path="tests.testapp.tasks.note_success")
    wait_until(lambda: callbacks.count() == len(ids), timeout=30, message=lambda: worker.output)
    assert Counter(str(run.args[0]) for run in callbacks) == Counter(map(str, ids))
    # Run, not just enqueued, before the stop: a graceful stop gives unstarted runs back,
    # and the count below is of the tasks this worker finished.
    wait_until(
        lambda: finished([run.pk for run in callbacks]), timeout=30, message=lambda: worker.output
    )
    worker.signal()
    assert worker.wait(30) == 0, worker.output
    assert f"stopped after {2 * len(ids)} task(s)" in worker.output, worker.output
    assert "discarded" not in worker.output, worker.output


@pytest.mark.parametrize("when", ["before", "after", "deadlock"])
def test_a_fire_whose_session_dies_or_deadlocks_loses_and_doubles_nothing(
    start_scheduler, record_dir, when
):
    needs_a_server()
    rows = lock_rows()
    now = timezone.now()
    schedule = make_schedule(
        now, kind="interval", interval=timedelta(seconds=1), misfire_policy="catch_up"
    )
    first = now.replace(microsecond=0) - timedelta(seconds=2)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=first)
    scheduler = start_scheduler("--max-sleep", "0.2", "--no-sync", env=fault(f"fire:{when}", rows))
    wait_until(lambda: fault_fired(record_dir), timeout=30, message=lambda: scheduler.output)
    count = Run.objects.filter(schedule=schedule).count
    wait_until(lambda: count() >= 6, timeout=30, message=lambda: f"fires:\n{scheduler.output}")
    # After a commit, the fires can land before the scheduler hears of its lost session (its
    # log line comes through a pipe): wait for the line, do not expect it yet.
    scheduler.wait_for_output("Scheduler database error")
    if when == "deadlock":
        assert "deadlock" in scheduler.output.lower(), scheduler.output
    scheduler.signal()
    assert scheduler.wait(30) == 0, scheduler.output
    times = list(
        Run.objects.filter(schedule=schedule)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )
    # Every fire time from the first on, one second apart: none missing, none twice.
    assert times == [first + timedelta(seconds=i) for i in range(len(times))], times
    schedule.refresh_from_db()
    assert schedule.fire_count == len(times)
    assert schedule.next_fire_at == times[-1] + timedelta(seconds=1)


# -- 3. Real deadlocks are retried ----------------------------------------------------------


def test_a_finish_that_deadlocks_is_retried_and_its_outcome_kept(start_worker, record_dir):
    needs_a_server()
    rows = lock_rows()
    ids = [fault_tasks.record_with_callback.enqueue(f"v{i}").id for i in range(10)]
    # With a callback, outcome and callback run are written in one transaction: the
    # deadlock rolls back both, and the worker must write both again, once.
    worker = start_worker(
        "--concurrency", "2", "--no-scheduler", env=fault("finish:deadlock", rows)
    )
    wait_until(lambda: fault_fired(record_dir), timeout=30, message=lambda: worker.output)
    wait_until(lambda: finished(ids), timeout=30, message=lambda: f"runs done:\n{worker.output}")
    wait_for_match(worker, r"Database error \([^)]*deadlock")
    assert_each_ran_once_and_succeeded(ids, record_dir)
    callbacks = Run.objects.filter(task_path="tests.testapp.tasks.note_success")
    wait_until(
        lambda: callbacks.filter(status="SUCCESSFUL").count() == len(ids),
        timeout=30,
        message=lambda: f"callbacks done:\n{worker.output}",
    )
    assert Counter(str(run.args[0]) for run in callbacks) == Counter(map(str, ids))
    assert Effect.objects.count() == 2  # the other session's ballast rolled back
    worker.signal()
    assert worker.wait(30) == 0, worker.output


def test_two_atomic_runs_that_deadlock_are_retried_and_both_succeed(start_worker, record_dir):
    needs_a_server()
    first, second = lock_rows()
    barrier = str(record_dir / "barrier")
    ids = [
        fault_tasks.cross_lock.enqueue("one", first, second, barrier).id,
        fault_tasks.cross_lock.enqueue("two", second, first, barrier).id,
    ]
    worker = start_worker("--concurrency", "2", "--no-scheduler")
    wait_until(lambda: finished(ids), timeout=40, message=lambda: f"runs done:\n{worker.output}")
    for run in Run.objects.filter(pk__in=ids):
        assert run.status == "SUCCESSFUL", (run.pk, run.errors, worker.output)
        assert run.attempt == 1 and run.errors == []
    # Each body's row exactly once, though one body ran twice (its first try rolled back).
    assert sorted(
        Effect.objects.exclude(name__startswith="lock-").values_list("name", flat=True)
    ) == [
        "done-one",
        "done-two",
    ]
    tries = Counter(line.split()[1] for line in read_records(record_dir) if line.startswith("try "))
    assert sorted(tries.values()) == [1, 2], tries
    # The worker says why it went again (the driver's message spans lines).
    retried = re.findall(
        r"failed its atomic transaction \((.*?)\); trying again", worker.output, re.S
    )
    assert len(retried) == 1 and "deadlock" in retried[0].lower(), worker.output
    worker.signal()
    assert worker.wait(30) == 0, worker.output


def test_a_rescue_that_deadlocks_is_retried_and_rescues_once(start_worker, record_dir, tmp_path):
    needs_a_server()
    rows = lock_rows()
    go = tmp_path / "go"
    run_id = wait_for_file.enqueue(str(go), 60).id
    doomed = start_worker("--no-scheduler", env=FAST_LEASES)
    wait_until(lambda: read_records(record_dir), timeout=30, message=lambda: doomed.output)
    doomed.kill()  # its run's lease runs out: a rescue's work
    go.touch()  # the attempt after the rescue passes at once
    rescuer = start_worker("--no-scheduler", env={**FAST_LEASES, **fault("rescue:deadlock", rows)})
    wait_until(lambda: fault_fired(record_dir), timeout=30, message=lambda: rescuer.output)
    wait_until(
        lambda: Run.objects.filter(pk=run_id, status="SUCCESSFUL").exists(),
        timeout=30,
        message=lambda: f"the rescued run done:\n{rescuer.output}",
    )
    wait_for_match(rescuer, r"lifeline: database error \([^)]*deadlock")
    # Rescued once, after the deadlock rolled the first rescue back: one lost attempt.
    run = Run.objects.get(pk=run_id)
    lost = [e for e in run.errors if e["exception_class_path"].endswith("WorkerLost")]
    assert run.attempt == 2 and len(run.errors) == len(lost) == 1, run.errors
    assert rescuer.output.count(f"Rescued run {run_id} ") == 1, rescuer.output
    rescuer.signal()
    assert rescuer.wait(30) == 0, rescuer.output
