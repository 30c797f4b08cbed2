"""Metadata and progress, a run's own voice (Django's proposal new-features#141, issue 24):
``.using(metadata=...)``, ``context.metadata``, ``save_metadata()`` / ``asave_metadata()``,
``set_progress()`` / ``aset_progress()``, ``TaskResult.metadata``. Real worker processes
against the database under test; the row's writes are counted by a trigger in the database."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from taskmill.backend import DatabaseBackend
from taskmill.compat import FrameworkTaskResult, TaskResultStatus, task_backends
from taskmill.exceptions import InvalidTaskArguments
from taskmill.models import Run, RunStatus
from taskmill.worker.metadata import PROGRESS_INTERVAL, MetadataWriter
from tests.conftest import FAST_LEASES, read_records, wait_until
from tests.testapp import metadata_tasks as tasks

pytestmark = pytest.mark.django_db(transaction=True)

BURST = ("--burst", "--no-scheduler")
WRITES_TABLE = "tm_test_metadata_writes"


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def get_result(result):
    return task_backends["default"].get_result(result.id)


@contextlib.contextmanager
def counted_metadata_writes() -> Iterator[None]:
    """A trigger that records, per run, each write that changed its metadata column."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {WRITES_TABLE} (run_id bigint NOT NULL)")
        if vendor == "postgresql":
            cursor.execute(
                f"CREATE FUNCTION tm_test_count_metadata() RETURNS trigger AS $$ BEGIN "
                f"INSERT INTO {WRITES_TABLE} VALUES (NEW.id); RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER tm_test_count_metadata AFTER UPDATE ON taskmill_run "
                "FOR EACH ROW WHEN (OLD.metadata IS DISTINCT FROM NEW.metadata) "
                "EXECUTE FUNCTION tm_test_count_metadata()"
            )
        elif vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER tm_test_count_metadata AFTER UPDATE ON taskmill_run "
                "WHEN OLD.metadata IS NOT NEW.metadata "
                f"BEGIN INSERT INTO {WRITES_TABLE} VALUES (NEW.id); END"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER tm_test_count_metadata AFTER UPDATE ON taskmill_run "
                "FOR EACH ROW BEGIN IF NOT (NEW.metadata <=> OLD.metadata) THEN "
                f"INSERT INTO {WRITES_TABLE} VALUES (NEW.id); END IF; END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if vendor == "postgresql":
                cursor.execute("DROP TRIGGER tm_test_count_metadata ON taskmill_run")
                cursor.execute("DROP FUNCTION tm_test_count_metadata()")
            else:
                cursor.execute("DROP TRIGGER tm_test_count_metadata")
            cursor.execute(f"DROP TABLE {WRITES_TABLE}")


def metadata_writes(run_id: object) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {WRITES_TABLE} WHERE run_id = %s", [int(run_id)])
        return cursor.fetchone()[0]


def recorded_time(record_dir: Path, prefix: str) -> float:
    (line,) = [line for line in read_records(record_dir) if line.startswith(prefix)]
    return float(line.split()[-1])


# -- the backend's side: enqueue and results ----------------------------------------------


def test_the_backend_declares_it_and_results_carry_metadata_as_a_dict():
    assert DatabaseBackend.supports_metadata is True
    plain = tasks.plain.enqueue(1)
    given = tasks.plain.using(metadata={"trace_id": "t-1", "tags": ("a", "b")}).enqueue(2)

    assert plain.metadata == {} and get_result(plain).metadata == {}
    assert row(plain).metadata is None  # nothing stored for none: the INSERT leaves it out
    # Stored as JSON (the tuple a list), in the run's own column, read back by get_result.
    assert given.metadata == {"trace_id": "t-1", "tags": ["a", "b"]}
    assert row(given).metadata == {"trace_id": "t-1", "tags": ["a", "b"]}
    fetched = tasks.plain.get_result(given.id)
    assert fetched.metadata == {"trace_id": "t-1", "tags": ["a", "b"]}
    # Still the framework's TaskResult to code that checks.
    assert isinstance(fetched, FrameworkTaskResult)


def test_every_run_of_a_bulk_enqueue_gets_its_own_copy():
    metadata = {"source": "import"}
    results = tasks.plain.using(metadata=metadata).enqueue_many([((n,), {}) for n in range(3)])
    metadata["source"] = "changed after using()"
    results[0].metadata["source"] = "changed on one result"
    assert [r.metadata for r in results[1:]] == [{"source": "import"}] * 2
    stored = Run.objects.filter(pk__in=[r.id for r in results]).values_list("metadata", flat=True)
    assert list(stored) == [{"source": "import"}] * 3


@pytest.mark.parametrize(
    ("metadata", "said"),
    [
        ({"when": datetime(2026, 1, 1)}, "metadata['when'] is a datetime.datetime"),
        ({1: "one"}, "metadata has the key 1, but JSON object keys must be strings"),
        ({"x": float("nan")}, "metadata['x'] is nan"),
        (["not", "a", "dict"], "metadata must be a dict (a JSON object), not list"),
        ("trace-1", "metadata must be a dict (a JSON object), not str"),
    ],
)
def test_metadata_that_is_not_a_json_object_is_refused_with_a_clear_error(metadata, said):
    with pytest.raises(InvalidTaskArguments) as raised:
        tasks.plain.using(metadata=metadata)
    assert said in str(raised.value)
    assert "Cannot enqueue 'tests.testapp.metadata_tasks.plain'" in str(raised.value)
    assert isinstance(raised.value, TypeError)
    assert not Run.objects.exists()


def test_metadata_changed_after_using_is_checked_again_at_enqueue():
    task = tasks.plain.using(metadata={"ok": 1})
    task.metadata["later"] = object()
    with pytest.raises(InvalidTaskArguments, match=r"metadata\['later'\] is a builtins.object"):
        task.enqueue(1)
    assert not Run.objects.exists()


# -- a running task's voice -----------------------------------------------------------------


def test_saved_metadata_is_read_by_get_result_while_running(start_worker, record_dir, tmp_path):
    release = tmp_path / "release"
    result = tasks.save_then_wait.using(metadata={"trace_id": "t-42"}).enqueue(str(release))
    start_worker(*BURST)
    wait_until(lambda: f"saved {result.id}" in read_records(record_dir), message="the task to save")

    running = get_result(result)
    assert running.status == TaskResultStatus.RUNNING
    assert running.metadata == {"trace_id": "t-42", "stage": "loading"}
    result.refresh()  # refresh() reads it too
    assert (result.status, result.metadata["stage"]) == (TaskResultStatus.RUNNING, "loading")

    release.write_text("go")
    wait_until(lambda: row(result).status == RunStatus.SUCCESSFUL, message="the run to finish")
    result.refresh()
    # The context saw what the caller passed; what it changed without saving came with the
    # outcome.
    assert result.return_value == {"trace_id": "t-42"}
    assert result.metadata == {"trace_id": "t-42", "stage": "done"}


def test_set_progress_in_a_loop_writes_a_few_times_a_second(run_worker, record_dir):
    rows = 400
    with counted_metadata_writes():
        result = tasks.progress_loop.enqueue(rows, 0.003)
        run_worker(*BURST)
        writes = metadata_writes(result.id)
    run = row(result)
    assert run.status == RunStatus.SUCCESSFUL, run.errors
    began, ended = recorded_time(record_dir, "loop began"), recorded_time(record_dir, "loop ended")
    # A write at the first report, then at most one per interval, and the last report with
    # the outcome: never one per row.
    most = int((ended - began) / PROGRESS_INTERVAL) + 2
    assert 2 <= writes <= most, (writes, most, ended - began)
    assert writes < rows / 10
    progress = run.metadata["progress"]
    assert {k: progress[k] for k in ("done", "total", "message")} == {
        "done": rows,
        "total": rows,
        "message": f"row {rows} of {rows}",
    }
    reported = datetime.fromisoformat(progress["at"]).timestamp()
    assert began <= reported <= ended + 0.001


def test_progress_is_seen_while_the_task_runs_and_moves_on(start_worker, record_dir):
    result = tasks.progress_loop.enqueue(300, 0.01)  # three seconds of rows
    start_worker(*BURST)
    seen = []

    def progressed_twice() -> bool:
        progress = (get_result(result).metadata or {}).get("progress")
        if progress and (not seen or progress["done"] != seen[-1]):
            seen.append(progress["done"])
        return len(seen) >= 2 and row(result).status == RunStatus.RUNNING

    wait_until(progressed_twice, message=lambda: f"two progress reports while running: {seen}")
    assert seen[0] < seen[1] <= 300


def test_a_stale_attempts_save_is_dropped_and_logged_not_raised(start_worker, record_dir, tmp_path):
    release = tmp_path / "release"
    result = tasks.save_after_release.enqueue(str(release))
    frozen = start_worker("--no-scheduler", env=FAST_LEASES)
    wait_until(lambda: "waiting 1" in read_records(record_dir), message="attempt 1 to start")
    frozen.freeze()
    try:
        rescuer = start_worker("--no-scheduler", env=FAST_LEASES)
        wait_until(
            lambda: row(result).status == RunStatus.SUCCESSFUL,
            timeout=60,  # a lease to run out, a rescue, a new worker's claim
            message=lambda: f"the rescued attempt to finish; the rescuer said:\n{rescuer.output}",
        )
    finally:
        release.write_text("go")
        frozen.thaw()
    frozen.wait_for_output(f"Outcome of run {result.id} attempt 1 discarded", timeout=30)
    # The attempt that owns the run kept its metadata: the stale save did not land.
    run = row(result)
    assert run.metadata == {"by": "attempt 2"}
    assert run.return_value == "attempt 2"
    # Thawed, the stale attempt saved and went on (nothing raised into it), its save
    # refused and said so; unless its worker's heartbeat, learning the run was lost, stopped
    # it first: on PostgreSQL that cancels the query its thread runs, the save's included
    # (test_a_save_fenced_off_is_dropped_said_once_and_never_raised has that path alone).
    if "saved 1" in read_records(record_dir):
        assert f"Metadata of run {result.id} attempt 1 dropped" in frozen.output


def test_a_save_fenced_off_is_dropped_said_once_and_never_raised(caplog):
    """The fence without the race of a frozen worker: the row has moved on to attempt 2
    (as a rescue and a new claim leave it) when attempt 1 saves."""
    result = tasks.plain.enqueue(1)
    Run.objects.filter(pk=result.id).update(
        status=RunStatus.RUNNING, attempt=2, metadata={"by": "attempt 2"}
    )
    writer = MetadataWriter({}, run_id=int(result.id), attempt=1, database="default")
    with caplog.at_level(logging.WARNING, logger="taskmill.worker"):
        writer.metadata["by"] = "attempt 1"
        writer.save()  # refused: no exception
        with CaptureQueriesContext(connection) as later:
            writer.metadata["more"] = True
            writer.save()
            writer.set_progress(1, 2, "after the fence")
    assert row(result).metadata == {"by": "attempt 2"}
    assert later.captured_queries == []  # the fence only moves on: nothing more is tried
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert [r.getMessage() for r in dropped] == [
        f"Metadata of run {result.id} attempt 1 dropped: the run was taken over meanwhile; "
        "this attempt's later saves are dropped too"
    ]
    assert writer.final() is None  # nor does the outcome carry it


def test_an_async_task_saves_and_reports_progress(start_worker, tmp_path):
    release = tmp_path / "release"
    result = tasks.async_progress.using(metadata={"caller": "web"}).enqueue(200, str(release))
    start_worker(*BURST)

    def saved() -> dict | None:
        running = get_result(result)
        return running.status == TaskResultStatus.RUNNING and running.metadata.get("async")

    wait_until(saved, message="the async task's save while it runs")
    running = get_result(result).metadata
    assert running["caller"] == "web"
    assert running["progress"]["done"] == 200  # asave_metadata wrote the latest report
    release.write_text("go")
    wait_until(lambda: row(result).status == RunStatus.SUCCESSFUL, message="the run to finish")
    assert row(result).metadata == running


def test_metadata_survives_a_retry_saved_or_not(run_worker):
    result = tasks.fails_once_with_metadata.using(metadata={"caller": 1}).enqueue()
    run_worker(*BURST)
    run = row(result)
    assert run.status == RunStatus.SUCCESSFUL, run.errors
    assert run.attempt == 2
    everything = {"caller": 1, "saved": "by attempt 1", "unsaved": "left by attempt 1"}
    assert run.return_value == everything  # what attempt 2's context started from
    assert run.metadata == everything


def test_a_task_in_a_child_process_saves_and_its_last_progress_comes_back(run_worker):
    result = tasks.saves_in_child.enqueue()
    run_worker(*BURST)
    run = row(result)
    assert run.status == RunStatus.SUCCESSFUL, run.errors
    assert run.metadata["pid"] == run.return_value  # saved from the child's own connection
    assert {k: run.metadata["progress"][k] for k in ("done", "total")} == {
        "done": 100,
        "total": 100,
    }


def test_an_atomic_tasks_save_commits_with_its_success(run_worker):
    result = tasks.atomic_saves.enqueue("ledger")
    run_worker(*BURST)
    run = row(result)
    assert (run.status, run.metadata) == (RunStatus.SUCCESSFUL, {"name": "ledger"})


def test_metadata_json_cannot_hold_is_the_tasks_error_said_clearly(run_worker):
    left = tasks.leaves_unstorable_metadata.enqueue()
    saved = tasks.saves_unstorable_metadata.using(metadata={"kept": True}).enqueue()
    bad_progress = tasks.reports_bad_progress.enqueue()
    run_worker(*BURST)

    # Left in the context at the end: the attempt fails as one whose return value cannot be
    # stored does, with a TypeError that names the key.
    run = row(left)
    assert run.status == RunStatus.FAILED
    assert run.errors[-1]["exception_class_path"] == "builtins.TypeError"
    assert "metadata['when'] is a pathlib" in run.errors[-1]["traceback"]
    # A save raises it into the task, which may handle it; nothing is lost.
    run = row(saved)
    assert run.status == RunStatus.SUCCESSFUL
    assert "metadata['when'] is a builtins.set" in run.return_value
    assert run.metadata == {"kept": True}
    assert row(bad_progress).return_value == [
        "ValueError: set_progress(): done must be a number >= 0, not 'three'.",
        "ValueError: set_progress(): total must be a number >= 0, not nan.",
        "ValueError: set_progress(): done must be a number >= 0, not -1.",
        "TypeError: set_progress(): message must be a string, not 42.",
    ]


def test_the_finished_signal_and_the_context_share_the_metadata(monkeypatch):
    from taskmill.compat import task_finished, task_started
    from taskmill.worker import Worker, WorkerOptions

    # The worker runs in this process; its child process must find the test database.
    monkeypatch.setenv("TASKMILL_TEST_DB_NAME", str(connection.settings_dict["NAME"]))

    started, finished = [], []

    def on_started(sender, task_result, **kwargs):
        started.append(json.loads(json.dumps(task_result.metadata)))

    def on_finished(sender, task_result, **kwargs):
        finished.append(task_result.metadata)

    task_started.connect(on_started)
    task_finished.connect(on_finished)
    try:
        tasks.fails_once_with_metadata.using(metadata={"caller": 2}).enqueue()
        child = tasks.saves_in_child.enqueue()
        assert Worker(WorkerOptions(poll_interval=0.05, burst=True)).run() == 0
    finally:
        task_started.disconnect(on_started)
        task_finished.disconnect(on_finished)
    assert {"caller": 2} in started
    assert {"caller": 2, "saved": "by attempt 1", "unsaved": "left by attempt 1"} in finished
    # The child's copy came back with the outcome.
    child_metadata = next(m for m in finished if "pid" in m)
    assert child_metadata["pid"] == row(child).return_value
    assert child_metadata["progress"]["done"] == 100
