"""The two systems under test, their tables, and their worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import environment
from .environment import PEER, REPO, SETTINGS, TASKMILL

# -- the two systems ----------------------------------------------------------------------------


@dataclass
class System:
    name: str
    noop: Any
    probe: Any
    model: Any
    table: str
    result_status_done: tuple[str, ...] = ("SUCCESSFUL", "FAILED")
    extra: dict[str, Any] = field(default_factory=dict)

    def done_count(self, ids: list[str] | None = None) -> int:
        rows = self.model.objects.filter(status__in=self.result_status_done)
        if ids is not None:
            rows = rows.filter(id__in=ids)
        return rows.count()

    def failed_count(self) -> int:
        return self.model.objects.filter(status="FAILED").count()


def systems() -> tuple[System, System]:
    from django_tasks_db.models import DBTaskResult

    from bench import tasks
    from taskmill.models import Run

    return (
        System(TASKMILL, tasks.noop, tasks.probe, Run, Run._meta.db_table),
        System(PEER, tasks.dt_noop, tasks.dt_probe, DBTaskResult, DBTaskResult._meta.db_table),
    )


def truncate(*systems_: System) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(s.table for s in systems_)} RESTART IDENTITY CASCADE")


def analyze(system: System) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {system.table}")


def enqueue_in_one_transaction(system: System, n: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        for _ in range(n):
            system.noop.enqueue()


def pre_enqueue(system: System, n: int) -> None:
    """Fill the queue quickly: taskmill's bulk API, or the peer's enqueue() in one transaction."""
    if system.name == TASKMILL:
        system.noop.enqueue_many([((), {})] * n)
    else:
        enqueue_in_one_transaction(system, n)


# -- subprocess workers --------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    paths = [str(environment.TASKMILL_SRC), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))
    env.pop("DJANGO_AUTORELOAD_ENV", None)
    return env


def taskmill_worker_cmd(*, burst: bool, concurrency: int) -> list[str]:
    cmd = [sys.executable, "-m", "django", "taskmill", "worker", "--no-reload"]
    cmd += ["--concurrency", str(concurrency)]
    if burst:
        cmd.append("--burst")
    return cmd


def peer_worker_cmd(*, burst: bool, interval: float) -> list[str]:
    # --queue-name default ("default") is where the tasks go; --backend picks the rows whose
    # backend_name is "dtdb"; --no-startup-delay drops the random sleep of up to 1 s.
    cmd = [sys.executable, "-m", "django", "db_worker", "--backend", "dtdb", "--no-reload"]
    cmd += ["--no-startup-delay", "--interval", repr(interval), "--verbosity", "0"]
    if burst:
        cmd.append("--batch")
    return cmd


class WorkerProcess:
    def __init__(self, cmd: list[str], logdir: Path, label: str, wrap: list[str] | None = None):
        self.cmd = [*(wrap or []), *cmd]
        self.log_path = logdir / f"{label}-{time.time_ns()}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=REPO,
            env=worker_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self, timeout: float) -> float:
        """Wait for the process to exit; return its wall time (spawn to exit), seconds."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"worker did not finish in {timeout:.0f}s: {self.describe()}"
            ) from None
        elapsed = time.monotonic() - self.started
        self._log.close()
        if code != 0:
            raise RuntimeError(f"worker exited with {code}: {self.describe()}")
        return elapsed

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited early ({self.proc.returncode}): {self.describe()}")

    def describe(self) -> str:
        if not self._log.closed:
            self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        return f"{' '.join(self.cmd)}\n--- log tail ({self.log_path}) ---\n{tail}"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval=0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
