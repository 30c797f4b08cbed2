"""A transient database error raised by a task's body: the database's fault, not the task's.

Real workers, real errors: each task makes the database fail its own statement the way an
outage does (tests/testapp/outage_tasks.py: its PostgreSQL session terminated, its MariaDB
connection killed, SQLite's write lock held past its busy timeout). The run goes READY
again as a lost worker's does, using no attempt of ``max_attempts`` (1 here), its error
kept with the real exception; after TASKMILL_MAX_LOST_ATTEMPTS it fails;
``retry_on_database_errors=False`` makes the error a failure like any other. A server
restart under load is in tests/faults/test_database_restart.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

import taskmill
from taskmill.compat import DECORATOR_TAKES_OPTIONS, InvalidTask, TaskResultStatus
from taskmill.conf import setting
from taskmill.exceptions import lost_attempts, task_failures
from taskmill.models import Run
from taskmill.tasks import Task
from taskmill.worker.interruptions import database_trouble
from tests.conftest import WorkerProcess, read_records, wait_until
from tests.testapp import outage_tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

FINISHED = ("SUCCESSFUL", "FAILED", "CANCELLED")
DJANGO_ERROR = "django.db.utils.OperationalError"
# What the database said, as the traceback's last line has it.
OUTAGE_MESSAGE = {
    "postgresql": "terminating connection due to administrator command",
    "mysql": "Connection was killed",
    "sqlite": "database is locked",
}


def needs_a_server(why: str) -> None:
    if connection.vendor == "sqlite":
        pytest.skip(why)


def drain(start_worker, results: list, *args: str) -> WorkerProcess:
    """One worker until every run in ``results`` is finished, then a graceful stop.

    Not ``--burst``: a run sent again after a lost attempt is not due for a second or so,
    and a burst worker would exit before."""
    worker = start_worker("--no-scheduler", "--concurrency", "2", *args)
    ids = [int(result.id) for result in results]
    wait_until(
        lambda: Run.objects.filter(pk__in=ids, status__in=FINISHED).count() == len(ids),
        timeout=60,
        message=lambda: f"runs finished; worker output:\n{worker.output}",
    )
    worker.signal()
    assert worker.wait(30) == 0, worker.output
    for result in results:
        result.refresh()
    return worker


def attempts(record_dir: Path, kind: str, result) -> list[int]:
    """The attempt numbers the task's body began, in order (one line per try)."""
    return [
        int(parts[2])
        for parts in (line.split() for line in read_records(record_dir))
        if parts[:2] == [kind, result.id]
    ]


def stored_errors(result) -> list[dict[str, str]]:
    return Run.objects.get(pk=int(result.id)).errors


def rows(name: str) -> int:
    return Effect.objects.filter(name=name).count()


def test_a_transient_database_error_sends_the_run_again_without_using_an_attempt(
    start_worker, record_dir
):
    runs = {
        "outage": outage_tasks.outage_then_row.enqueue("plain", 1),
        "wrapped": outage_tasks.wrapped_outage.enqueue("wrapped", 1),
        "child": outage_tasks.outage_in_child.enqueue("child", 1),
        "async": outage_tasks.async_outage.enqueue("async", 1),
    }
    worker = drain(start_worker, list(runs.values()))
    message = OUTAGE_MESSAGE[connection.vendor]
    for kind, result in runs.items():
        # max_attempts is 1, and the run succeeded on its second attempt: the first, ended
        # by the database, used none.
        assert result.status == TaskResultStatus.SUCCESSFUL, (kind, result.errors, worker.output)
        assert attempts(record_dir, kind, result) == [1, 2], kind
        assert result.attempts == 2 and result.return_value == result.args[0]
        assert rows(result.args[0]) == 1, kind
        # The error is kept, the real one, through Django's API...
        [error] = result.errors
        expected = "tests.testapp.outage_tasks.SyncFailed" if kind == "wrapped" else DJANGO_ERROR
        assert error.exception_class_path == expected, (kind, error.traceback)
        assert message in error.traceback, (kind, error.traceback)
        # ... and counted as a lost attempt, not as a failure of the task.
        [entry] = stored_errors(result)
        assert entry["counted_as"] == "lost", entry
        assert (task_failures([entry]), lost_attempts([entry])) == (0, 1)
    # The worker said what happened, and did not call it a failure of the task.
    assert worker.output.count("ended by a database error, not by its task") == 4, worker.output
    assert "failed for good" not in worker.output


def test_a_run_the_database_keeps_failing_fails_after_the_lost_attempts_limit(
    start_worker, record_dir
):
    doomed = outage_tasks.outage_then_row.enqueue("doomed", 99)
    worker = drain(start_worker, [doomed])
    assert doomed.status == TaskResultStatus.FAILED, doomed.errors
    limit = int(setting("TASKMILL_MAX_LOST_ATTEMPTS"))
    assert attempts(record_dir, "outage", doomed) == list(range(1, limit + 1))
    assert [error.exception_class_path for error in doomed.errors] == [DJANGO_ERROR] * limit
    assert all(entry["counted_as"] == "lost" for entry in stored_errors(doomed))
    assert rows("doomed") == 0
    assert f"{limit} lost attempts, the limit (TASKMILL_MAX_LOST_ATTEMPTS)" in worker.output


def test_retry_on_database_errors_false_makes_the_error_a_failure_like_any_other(
    start_worker, record_dir
):
    opted_out = outage_tasks.outage_no_retry.enqueue("opted-out", 1)
    per_call = outage_tasks.outage_then_row.using(retry_on_database_errors=False).enqueue(
        "per-call", 1
    )
    # Its own retry settings decide instead: with an attempt left, it retries as a failure.
    own_retry = outage_tasks.outage_no_retry.using(max_attempts=2).enqueue("own-retry", 1)
    assert Run.objects.get(pk=int(per_call.id)).options == {"retry_on_database_errors": False}
    drain(start_worker, [opted_out, per_call, own_retry])
    for kind, result in (("no_retry", opted_out), ("outage", per_call)):
        assert result.status == TaskResultStatus.FAILED, result.errors
        assert attempts(record_dir, kind, result) == [1]
        [error] = result.errors
        assert error.exception_class_path == DJANGO_ERROR
        assert "counted_as" not in stored_errors(result)[0]
        assert rows(result.args[0]) == 0
    assert own_retry.status == TaskResultStatus.SUCCESSFUL
    assert attempts(record_dir, "no_retry", own_retry) == [1, 2]
    assert task_failures(stored_errors(own_retry)) == 1 and rows("own-retry") == 1


def test_an_atomic_task_follows_the_same_rule(start_worker, record_dir):
    needs_a_server("an atomic body holds SQLite's write lock all along: no lock for it to wait for")
    atomic = outage_tasks.atomic_outage.enqueue("atomic", 1)
    opted_out = outage_tasks.atomic_outage_no_retry.enqueue("atomic-opted-out", 1)
    drain(start_worker, [atomic, opted_out])
    # Its transaction tried three times in place (each rolled back), then the attempt ended
    # as a lost one; the next attempt's commit holds the body's row, once.
    assert atomic.status == TaskResultStatus.SUCCESSFUL, atomic.errors
    assert Counter(attempts(record_dir, "atomic", atomic)) == {1: 3, 2: 1}
    [error] = atomic.errors
    assert error.exception_class_path == DJANGO_ERROR
    assert stored_errors(atomic)[0]["counted_as"] == "lost"
    assert rows("atomic") == 1
    # Opted out: not tried again in place either; the rollback left no row.
    assert opted_out.status == TaskResultStatus.FAILED, opted_out.errors
    assert attempts(record_dir, "atomic_no_retry", opted_out) == [1]
    assert "counted_as" not in stored_errors(opted_out)[0]
    assert rows("atomic-opted-out") == 0


def test_the_admin_shows_an_attempt_the_database_ended(start_worker, admin_client):
    result = outage_tasks.outage_then_row.enqueue("shown", 1)
    drain(start_worker, [result])
    page = admin_client.get(f"/admin/taskmill/run/{result.id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "OperationalError" in text and OUTAGE_MESSAGE[connection.vendor] in text
    assert "a lost attempt: the database&#x27;s fault, not the task&#x27;s" in text, text


# -- without a worker ------------------------------------------------------------------------


@IN_A_TRANSACTION
def test_the_option_is_checked_and_stored_per_call_only_when_it_differs():
    with pytest.raises(InvalidTask, match="retry_on_database_errors must be True or False"):
        taskmill.task(retry_on_database_errors="no")(outage_tasks.provoke_outage)
    assert outage_tasks.outage_then_row.retry_on_database_errors is True
    same = outage_tasks.outage_then_row.using(retry_on_database_errors=True).enqueue("x", 0)
    assert Run.objects.get(pk=int(same.id)).options is None


@IN_A_TRANSACTION
@pytest.mark.skipif(
    not DECORATOR_TAKES_OPTIONS, reason="only Django 6.1's task() passes options to backends"
)
def test_djangos_own_decorator_takes_the_option():
    from django.tasks import task as django_task

    made = django_task(retry_on_database_errors=False)(outage_tasks.provoke_outage)
    assert isinstance(made, Task) and made.retry_on_database_errors is False


def caught(action) -> DatabaseError:
    try:
        with transaction.atomic():
            action()
    except DatabaseError as exc:
        return exc
    raise AssertionError("no database error")


@IN_A_TRANSACTION
def test_a_constraint_or_a_missing_table_is_the_tasks_own_failure():
    Effect.objects.create(id=1, name="one")
    duplicate = caught(lambda: Effect.objects.create(id=1, name="again"))
    assert isinstance(duplicate, IntegrityError) and database_trouble(duplicate) is None

    def missing_table() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_here")

    assert database_trouble(caught(missing_table)) is None


@IN_A_TRANSACTION
def test_a_write_on_a_read_only_postgresql_is_transient():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's read-only transaction (SQLSTATE 25006), as on a standby")

    def write_read_only() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
        Effect.objects.create(name="read-only")

    error = caught(write_read_only)
    assert error.__cause__.sqlstate == "25006"
    assert database_trouble(error) is error


@IN_A_TRANSACTION
def test_mariadb_read_only_errors_are_transient_and_other_option_refusals_are_not():
    # A server's words for its error numbers (a read-only server cannot be had on the shared
    # one): 1290 is any option that prevents a statement, only --read-only is an outage.
    if connection.vendor != "mysql":
        pytest.skip("MariaDB's and MySQL's error numbers, with their driver")
    import MySQLdb
    from django.db.utils import OperationalError

    def wrapped(code: int, message: str) -> OperationalError:
        error = OperationalError(code, message)
        error.__cause__ = MySQLdb.OperationalError(code, message)
        return error

    read_only = "The MariaDB server is running with the --read-only option so it cannot execute"
    secure = "The MariaDB server is running with the --secure-file-priv option so it cannot"
    assert database_trouble(wrapped(1290, read_only)) is not None
    assert database_trouble(wrapped(1836, "Running in read-only mode")) is not None
    assert database_trouble(wrapped(1290, secure)) is None
    assert database_trouble(ValueError(2006)) is None  # a number alone is no database error


@IN_A_TRANSACTION
def test_the_workers_own_verdicts_are_never_the_databases():
    from taskmill.exceptions import RunCancelled, TaskTimeout

    lost = DatabaseError("server closed the connection unexpectedly")
    wrapped = RuntimeError("could not save")
    wrapped.__context__ = lost  # raised while handling it
    assert database_trouble(wrapped) is lost
    timeout = TaskTimeout("ran past its timeout")
    timeout.__context__ = lost
    assert database_trouble(timeout) is None
    stopped = RunCancelled("stopped")
    stopped.__cause__ = lost
    assert database_trouble(stopped) is None
    suppressed = RuntimeError("not about the database")
    suppressed.__context__, suppressed.__suppress_context__ = lost, True  # raise ... from None
    assert database_trouble(suppressed) is None
    # An exception group counts when each of its members is the database's.
    assert database_trouble(ExceptionGroup("tasks", [lost, lost])) is lost
    assert database_trouble(ExceptionGroup("tasks", [lost, ValueError("x")])) is None
