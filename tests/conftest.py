"""Fixtures shared by every suite: the database under test, and real worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

ROOT = Path(__file__).resolve().parent.parent


def only_on(database: str, why: str) -> pytest.MarkDecorator:
    """Run a module on one database only: for suites whose subject does not depend on the
    database (the admin's permission logic, the supervisor's process handling), so that the
    matrix does not pay for them three times. ``why`` says so in the skip reason."""
    here = os.environ.get("TASKMILL_TEST_DB", "sqlite")
    return pytest.mark.skipif(here != database, reason=f"runs on {database} only: {why}")


def pytest_report_header(config: pytest.Config) -> str:
    import django

    database = os.environ.get("TASKMILL_TEST_DB", "sqlite")
    return f"taskmill tests: database={database}, Django {django.get_version()}"


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "",
) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    ``message`` may be a callable, read only on failure: a worker's output then shows what
    the worker said up to the timeout, not up to the call.

    The pause between polls starts at 5 ms and grows to ``interval``: a quick condition is
    seen at once, and a long wait (a worker starting on a loaded machine) does not burn CPU
    on a query every few milliseconds. At a fixed 20 ms, the suite's polling took a good
    share of the 2-core machine that the workers being waited for needed.
    """
    deadline = time.monotonic() + timeout
    pause = min(0.005, interval)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {said or predicate}")
        time.sleep(pause)
        pause = min(pause * 1.5, interval)


@contextlib.contextmanager
def held_by_another_transaction(
    lock: Callable[[], object], timeout: float = 30.0, locked_within: float = 30.0
) -> Iterator[None]:
    """Run ``lock`` in a transaction on a thread (and connection) of its own, and keep that
    transaction open while the block runs (``timeout`` at most): the row locks another
    worker or an atomic task would hold, taken within ``locked_within`` seconds. A failure
    inside ``lock`` is raised here, not lost with its thread."""
    locked, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def holder() -> None:
        try:
            with transaction.atomic():
                lock()
                locked.set()
                release.wait(timeout)
        except BaseException as exc:  # raised in the test's thread below
            failures.append(exc)
        finally:
            locked.set()
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        wait_until(locked.is_set, timeout=locked_within, message="the other transaction's locks")
        if failures:
            raise failures[0]
        yield
    finally:
        release.set()
        thread.join(timeout)
    if failures:
        raise failures[0]


# For workers in the lease, rescue and control tests: heartbeats every 0.2 s, leases of 1.5 s,
# so a stop is seen and a dead worker's run rescued within a couple of seconds everywhere.
FAST_LEASES = {
    "TASKMILL_TEST_HEARTBEAT": "0.2",
    "TASKMILL_TEST_LEASE": "1.5",
    "TASKMILL_TEST_RESCUE": "0.2",
}


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not reaped yet) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except FileNotFoundError:
        return False


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "records"
    directory.mkdir()
    return directory


def read_records(directory: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted(directory.glob("*.log")):
        lines.extend(path.read_text().splitlines())
    return lines


@pytest.fixture
def subprocess_env(record_dir: Path) -> dict[str, str]:
    """Environment for a child process that talks to this test's database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["TASKMILL_TEST_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["TASKMILL_TEST_RECORD_DIR"] = str(record_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """A real ``manage.py taskmill <subcommand>`` process whose output the test can watch."""

    def __init__(self, args: list[str], env: dict[str, str], subcommand: str = "worker") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django", "taskmill", subcommand, *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group: cleanup also reaches an autoreloader's child process.
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        wait_until(
            lambda: sum(text in line for line in self.lines) >= count,
            timeout,
            message=lambda: f"{text!r} in worker output:\n{self.output}",
        )

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def freeze(self, deadline: float = 30.0) -> None:
        """SIGSTOP the worker's process group, at a moment it holds no lock a rescue needs.

        A process stopped inside a transaction keeps its locks until it resumes: on SQLite
        the one write lock, elsewhere the row locks of its RUNNING runs (a heartbeat's lease
        renewal), which the rescue passes over (SKIP LOCKED). Then nothing is rescued
        meanwhile, which is the database's nature and not what a freeze test is after (CI:
        a rescue that waited 60 s on SQLite's lock, and one on MariaDB that never came). So
        the locks are probed while the worker is stopped; held, the worker resumes to finish
        its transaction and is stopped again.
        """
        give_up = time.monotonic() + deadline
        while True:
            os.killpg(self.process.pid, signal.SIGSTOP)
            if (
                sqlite_write_lock_is_free()
                if connection.vendor == "sqlite"
                else running_rows_are_free(self.process.pid)
            ):
                return
            os.killpg(self.process.pid, signal.SIGCONT)
            if time.monotonic() > give_up:
                raise AssertionError(f"held a lock a rescue needs at every stop for {deadline}s")
            time.sleep(0.02)  # let it run on to its commit before the next stop

    def thaw(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)


def running_rows_are_free(pid: int) -> bool:
    """Whether no transaction locks the row of a run that the worker of process ``pid``
    holds (PostgreSQL, MariaDB: a worker's id is "host:pid:suffix")."""
    from django.db import transaction

    from taskmill.models import Run, RunStatus

    running = Run.objects.filter(status=RunStatus.RUNNING, worker_id__contains=f":{pid}:")
    with transaction.atomic():
        unlocked = len(running.select_for_update(skip_locked=True).values_list("pk"))
    return unlocked == running.count()


def sqlite_write_lock_is_free() -> bool:
    """Whether another connection could take the test database's write lock now."""
    import sqlite3

    probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.2, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return False
    finally:
        probe.close()


@pytest.fixture
def start_worker(subprocess_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, reload: bool = False) -> WorkerProcess:
        reload_flag = "--reload" if reload else "--no-reload"
        worker = WorkerProcess([reload_flag, *args], {**subprocess_env, **(env or {})})
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def run_worker(start_worker: Callable[..., WorkerProcess]) -> Callable[..., WorkerProcess]:
    """Run a worker to completion (use with --burst or --max-tasks)."""

    def run(
        *args: str,
        timeout: float = 120.0,
        expect_code: int | None = 0,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        worker = start_worker(*args, env=env)
        code = worker.wait(timeout)
        if expect_code is not None:
            assert code == expect_code, f"worker exited {code}:\n{worker.output}"
        return worker

    return run


def kill_other_connections() -> int:
    """Cut every other session to the test database, as a failover or a restart would."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]
        cursor.execute(
            "SELECT id FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        ids = [row[0] for row in cursor.fetchall()]
        for session_id in ids:
            cursor.execute(f"KILL {int(session_id)}")
        return len(ids)


@pytest.fixture(autouse=True)
def _forget_limited_queues() -> Iterator[None]:
    """A queue limited at run time in a test is rolled back (or flushed) with it: this
    process's cache of which queues are limited (taskmill.limits.queues) must not outlive
    it."""
    yield
    from taskmill.limits.queues import limited

    limited.forget()


@pytest.fixture(scope="session", autouse=True)
def _pooled_database_let_go(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the suite that runs through PgBouncer (scripts/test sets TASKMILL_TEST_PGBOUNCER),
    the pooler keeps server connections to the test database open after the last test, and
    PostgreSQL refuses to drop a database in use: cut them, over a direct connection, before
    pytest-django drops it (this fixture's teardown runs before its setup's)."""
    if not os.environ.get("TASKMILL_TEST_PGBOUNCER"):
        yield
        return
    request.getfixturevalue("django_db_setup")
    # Django's model checks ask each database its version: ask the second alias (PostgreSQL
    # itself, for LISTEN) once now, so that a check run by a test that may not touch it
    # finds the answer known (the default alias's is known by then too).
    with request.getfixturevalue("django_db_blocker").unblock():
        from django.db import connections

        for alias in connections:
            if connections[alias].vendor == "postgresql":
                connections[alias].pg_version  # noqa: B018 (cached on the connection)
                connections[alias].close()
    yield
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=int(os.environ.get("TASKMILL_PG_DIRECT_PORT", "5432")),
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as direct:
        direct.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [settings["NAME"]],
        )
