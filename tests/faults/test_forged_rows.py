"""Rows forged directly in the run table: a real worker refuses each with a clear error
recorded on the run, runs no code the row chose, and keeps working.

A database row must never choose which code runs (DESIGN.md, Storage), and a row a worker
cannot make sense of must fail on its own, not take the worker (or one of its task threads)
down with it. Each test forges rows with raw SQL, then enqueues a normal task after them and
runs a real ``manage.py taskmill worker --burst``: it must exit 0 having finished them all.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from taskmill.models import Run
from tests.conftest import FAST_LEASES, wait_until
from tests.testapp import hostile_tasks

# Real processes against each database: the main leg runs them on every database; they
# prove nothing about the Django version (scripts/test).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RUN_TABLE = Run._meta.db_table
BURST = ("--burst", "--no-scheduler", "--concurrency", "2")


def forge(run_id: int, **columns: str | None) -> None:
    """Overwrite columns of a run with raw SQL: JSON columns take JSON *text* as given."""
    json_columns = {"args", "kwargs", "errors", "worker_ids", "options", "return_value", "metadata"}
    assignments = []
    for name in columns:
        cast = "::jsonb" if connection.vendor == "postgresql" and name in json_columns else ""
        assignments.append(f"{name} = %s{cast}")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RUN_TABLE} SET {', '.join(assignments)} WHERE id = %s",
            [*columns.values(), run_id],
        )
        assert cursor.rowcount == 1


@contextmanager
def json_checks_off() -> Iterator[None]:
    """Let invalid JSON text into a JSON column (SQLite and MariaDB store JSON as text and
    guard it with a CHECK constraint that a hostile writer can switch off)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        else:
            cursor.execute("SET SESSION check_constraint_checks = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
            else:
                cursor.execute("SET SESSION check_constraint_checks = 1")


def enqueue_echo() -> int:
    return int(hostile_tasks.echo.enqueue().id)


def canary(tmp_path: Path) -> tuple[int, Path]:
    """A normal run enqueued after the forged ones: it must run in the same worker."""
    marker = tmp_path / "canary"
    return int(hostile_tasks.touch.enqueue(str(marker)).id), marker


def run_burst(start_worker: Callable[..., Any]) -> Any:
    """Run a burst worker to its end: exit code 0 says it finished every run and stopped
    cleanly. One whose loop or task thread died would hang with runs outstanding (or exit
    non-zero): the deadline catches that, with the worker's output."""
    worker = start_worker(*BURST)
    try:
        code = worker.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not finish within 60 s:\n{worker.output[-5000:]}")
    assert code == 0, f"the worker exited {code}:\n{worker.output[-5000:]}"
    return worker


def assert_refused(run_id: int, *words: str) -> Run:
    run = Run.objects.get(pk=run_id)
    assert run.status == "FAILED", f"run {run_id} is {run.status}: {run.errors}"
    assert run.errors, f"run {run_id} failed without an error"
    message = run.errors[-1]["traceback"]
    for word in words:
        assert word in message, f"{word!r} not in the last error of run {run_id}:\n{message}"
    assert run.return_value is None
    assert run.worker_id == "" and run.lease_expires_at is None
    return run


def assert_canary_ran(run_id: int, marker: Path) -> None:
    run = Run.objects.get(pk=run_id)
    assert run.status == "SUCCESSFUL", f"the canary is {run.status}: {run.errors}"
    assert marker.read_text() == "ran"
    assert not Run.objects.exclude(status__in=["SUCCESSFUL", "FAILED"]).exists()


# -- task paths --------------------------------------------------------------------------


def test_task_paths_naming_no_registered_task_are_refused_and_run_nothing(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    shell_marker = tmp_path / "os-system-ran"
    eval_marker = tmp_path / "eval-ran"
    plain_marker = tmp_path / "plain-function-ran"
    forged = {
        # (task path, args): each would leave a marker file if the worker called it.
        "os.system": [f"touch {shell_marker}"],
        "builtins.eval": [f"__import__('pathlib').Path({str(eval_marker)!r}).touch()"],
        "builtins.exec": [f"open({str(eval_marker)!r}, 'w')"],
        "subprocess.call": [["touch", str(shell_marker)]],
        "tests.testapp.hostile_tasks.not_a_task": [str(plain_marker)],
        "tests.testapp.hostile_tasks.Path": [str(plain_marker)],
        "tests.testapp.no_such_module.task": [],
        "no_such_package.tasks.task": [],
        "nodot": [],
        "": [],
        ".": [],
        "tests.testapp..echo": [],
        "tests.testapp.hostile_import_fails.task": [],
        "tests.testapp.hostile_tasks.echo.__call__": [],
        "tests.testapp.hostile_tasks.echo\x01": [],
    }
    ids = {}
    for path, args in forged.items():
        run_id = enqueue_echo()
        forge(run_id, task_path=path, args=json.dumps(args))
        ids[path] = run_id
    canary_id, marker = canary(tmp_path)

    run_burst(start_worker)

    for path, run_id in ids.items():
        assert_refused(run_id, "TaskNotRegistered", f"Task {path!r} is not registered")
    assert not shell_marker.exists(), "os.system or subprocess.call was called"
    assert not eval_marker.exists(), "eval or exec was called"
    assert not plain_marker.exists(), "a function that is not a task was called"
    assert_canary_ran(canary_id, marker)


def insert_forged(**overrides: str) -> int:
    """INSERT a run from outside taskmill: a normal row's columns, some replaced."""
    template = enqueue_echo()
    columns = [
        field.column
        for field in Run._meta.concrete_fields
        if not field.primary_key and not field.generated
    ]
    selected = []
    params = []
    for column in columns:
        if column in overrides:
            cast = "::jsonb" if connection.vendor == "postgresql" and column == "args" else ""
            selected.append(f"%s{cast}")
            params.append(overrides[column])
        else:
            selected.append(column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RUN_TABLE} ({', '.join(columns)}) "
            f"SELECT {', '.join(selected)} FROM {RUN_TABLE} WHERE id = %s",
            [*params, template],
        )
    Run.objects.filter(pk=template).delete()
    return Run.objects.latest("id").pk


def test_a_row_inserted_from_outside_naming_os_system_is_refused(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    marker = tmp_path / "inserted-row-ran"
    run_id = insert_forged(task_path="os.system", args=json.dumps([f"touch {marker}"]))
    canary_id, canary_marker = canary(tmp_path)

    run_burst(start_worker)

    assert_refused(run_id, "TaskNotRegistered", "'os.system' is not registered")
    assert not marker.exists(), "os.system was called"
    assert_canary_ran(canary_id, canary_marker)


# -- arguments of the wrong shape --------------------------------------------------------

WRONG_SHAPES = {
    "args is an object": {"args": '{"a": 1}'},
    "args is a string": {"args": '"abc"'},
    "args is a number": {"args": "42"},
    "args is JSON null": {"args": "null"},
    "args is true": {"args": "true"},
    "kwargs is a list": {"kwargs": "[1, 2]"},
    "kwargs is a string": {"kwargs": '"k"'},
    "kwargs is JSON null": {"kwargs": "null"},
    "errors is an object": {"errors": '{"x": 1}'},
    "errors holds a number": {"errors": "[1]"},
    # Not a string: PostgreSQL's claim (worker_ids || id) would turn it into a valid list.
    "worker_ids holds a number": {"worker_ids": "[1]"},
    "options is a list": {"options": "[1]"},
    "options has a string timeout": {"options": '{"timeout": "soon"}'},
    "options has a string max_attempts": {"options": '{"max_attempts": "many"}'},
    "options has a string result_ttl": {"options": '{"result_ttl": "long"}'},
    "options has a negative max_snoozes": {"options": '{"max_snoozes": -1}'},
    # The context's metadata is a dict: a row holding anything else is not taskmill's.
    "metadata is a list": {"metadata": "[1]"},
    "metadata is a string": {"metadata": '"m"'},
}


def test_arguments_and_state_of_the_wrong_shape_fail_the_run_not_the_worker(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    ids = {}
    for case, columns in WRONG_SHAPES.items():
        run_id = enqueue_echo()
        forge(run_id, **columns)
        ids[case] = (run_id, next(iter(columns)))
    canary_id, marker = canary(tmp_path)

    run_burst(start_worker)

    for case, (run_id, column) in ids.items():
        run = assert_refused(run_id, "CorruptRun", f"'{column}'")
        # Nothing ran: echo would have returned its arguments.
        assert run.return_value is None, case
    assert_canary_ran(canary_id, marker)


def test_invalid_json_text_in_the_arguments_fails_the_run_not_the_worker(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL's jsonb refuses invalid JSON text: such a row cannot exist")
    ids = {}
    with json_checks_off():
        for column, text in [
            ("args", "[1, 2"),
            ("args", "not json at all"),
            ("kwargs", "{'single': 'quotes'}"),
            ("args", ""),
            ("errors", "[{]"),
            ("options", "{"),
            ("metadata", "{"),
        ]:
            run_id = enqueue_echo()
            forge(run_id, **{column: text})
            ids[run_id] = column
    canary_id, marker = canary(tmp_path)

    run_burst(start_worker)

    for run_id, column in ids.items():
        assert_refused(run_id, "CorruptRun", f"'{column}'", "not valid JSON")
    assert_canary_ran(canary_id, marker)


def test_null_options_are_a_normal_run(start_worker: Callable[..., Any], tmp_path: Path) -> None:
    """``options`` and ``metadata`` are the nullable JSON columns the claim reads: SQL NULL
    means "the task's own options" and "no metadata". The other JSON columns are NOT NULL
    (checked here, so a schema change that allows NULL makes this test say so)."""
    run_id = enqueue_echo()
    forge(run_id, options=None, metadata=None)
    for column in ("args", "kwargs", "errors", "worker_ids"):
        with pytest.raises(IntegrityError), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {RUN_TABLE} SET {column} = NULL WHERE id = %s", [run_id])
    canary_id, marker = canary(tmp_path)

    run_burst(start_worker)

    assert Run.objects.get(pk=run_id).status == "SUCCESSFUL"
    assert_canary_ran(canary_id, marker)


# -- a huge payload ----------------------------------------------------------------------


def payload_bytes() -> int:
    """50 MB, or on MariaDB as much as its max_allowed_packet lets one statement carry."""
    size = 50 * 1024 * 1024
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            packet = int(cursor.fetchone()[0])
        size = min(size, packet - 1024 * 1024)
    return size


def test_a_huge_payload_runs_and_the_worker_goes_on(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    """A ~50 MB argument is not refused: the task runs and succeeds (on MariaDB the payload
    is capped by the server's max_allowed_packet, 16 MB by default: a bigger row cannot be
    written at all), and the worker finishes the runs after it."""
    size = payload_bytes()
    run_id = enqueue_echo()
    forge(run_id, task_path=hostile_tasks.payload_size.module_path, args=json.dumps(["x" * size]))
    canary_id, marker = canary(tmp_path)

    run_burst(start_worker)

    run = Run.objects.get(pk=run_id)
    assert run.status == "SUCCESSFUL", run.errors
    assert run.return_value == size
    assert_canary_ran(canary_id, marker)


# -- a forged RUNNING row whose worker is gone: the rescue's path ---------------------------------


def test_a_forged_running_row_is_rescued_and_settled_not_left_running(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    """A RUNNING row of a worker that does not exist, lease expired, its state forged: the
    rescue must not trip on it (one bad row in a batch would keep every run of the batch
    RUNNING for ever). The rescue rewrites the errors, so forged errors are replaced; any
    other forged column makes the run fail as corrupt when it is claimed again."""
    cases = {
        "errors is an object": {"errors": '{"x": 1}'},
        "worker_ids holds a number": {"worker_ids": "[1]"},
        "options is a list": {"options": "[1]"},
        "args is a string": {"args": '"abc"'},
    }
    broken_json = connection.vendor != "postgresql"  # invalid JSON text: see above
    if broken_json:
        cases["args is not JSON"] = {"args": "[1, 2"}
        cases["errors is not JSON"] = {"errors": "[{]"}
    ids = {}
    with json_checks_off() if broken_json else nullcontext():
        for case, columns in cases.items():
            run_id = enqueue_echo()
            forge(
                run_id,
                status="RUNNING",
                attempt="1",
                worker_id="ghost-worker",
                lease_expires_at=connection.ops.adapt_datetimefield_value(
                    timezone.now() - timedelta(minutes=5)
                ),
                **{"worker_ids": '["ghost-worker"]', **columns},
            )
            ids[case] = run_id
    canary_id, marker = canary(tmp_path)

    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    try:
        wait_until(lambda: not Run.objects.filter(status__in=["RUNNING", "READY"]).exists(), 60)
    except AssertionError:
        statuses = list(Run.objects.values_list("id", "status"))
        pytest.fail(f"runs not settled: {statuses}\n{worker.output[-5000:]}")
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output

    for case, run_id in ids.items():
        column = case.split()[0]
        run = Run.objects.get(pk=run_id)
        if column == "errors":  # rewritten by the rescue: the run went again and succeeded
            assert run.status == "SUCCESSFUL", (case, run.status, run.errors)
            assert run.errors[-1]["exception_class_path"].endswith("WorkerLost"), run.errors
        else:  # kept, and judged by the next claim
            assert_refused(run_id, "CorruptRun", f"'{column}'")
    assert_canary_ran(canary_id, marker)
