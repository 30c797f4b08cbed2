"""The demo project (example/) run for real on a throw-away SQLite file: a worker with its
scheduler, the demo's stream of tasks and ``runserver``, the way ``scripts/demo`` runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "example" / "manage.py"

# How long a child gets to stop on SIGTERM before it is killed: the worker first waits for
# its running tasks, and the demo's stuck_export sleeps an hour by design.
STOP_GRACE = 15.0


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DemoProject:
    """One private copy of the demo: its database, its processes and their logs."""

    def __init__(self, directory: Path, log_dir: Path) -> None:
        self.directory = directory
        self.database = directory / "demo.sqlite3"
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self.env = {
            **os.environ,
            # pytest-django exported the tests' settings; manage.py only sets a default.
            "DJANGO_SETTINGS_MODULE": "demo_project.settings",
            "TASKMILL_DEMO_DB": str(self.database),
            # This checkout's taskmill, even when the venv has another one installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }

    def manage(self, *args: str, timeout: float = 180.0) -> str:
        """Run ``example/manage.py ARGS`` to the end; its output, or an error that shows it."""
        done = subprocess.run(
            [sys.executable, str(MANAGE), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def start(self, name: str, *args: str) -> None:
        """Start ``manage.py ARGS`` in the background, its output in LOG_DIR/NAME.log."""
        log = (self.log_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        self.processes[name] = subprocess.Popen(
            [sys.executable, str(MANAGE), *args],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, so that stopping it reaches the task processes it forked.
            start_new_session=True,
        )

    def set_up(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self.manage("demo_setup")
        # One round of the demo's tasks, not its endless stream: on a busy machine the stream
        # outgrows the worker and the runs a test waits for sit behind a backlog. The round
        # has successes and a failure for good (import_batch of batch 3); the schedules keep
        # adding runs while the tests read the pages.
        self.enqueue_round()
        self.start("worker", "taskmill", "worker", "--concurrency", "4", "--no-reload")
        self.start("web", "runserver", "--noreload", f"127.0.0.1:{self.port}")

    def enqueue_round(self) -> str:
        """Enqueue one round of the demo's tasks (demo_enqueue --once); its report."""
        return self.manage("demo_enqueue", "--once")

    def dead(self) -> str | None:
        """The name of a process that exited, with the end of its log; None while all run."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                return f"the demo's {name} process exited {process.returncode}:\n{tail}"
        return None

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        """Poll the login page until it answers 200, failing early if a process died."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if why := self.dead():
                raise RuntimeError(why)
            try:
                with urllib.request.urlopen(f"{self.base_url}/admin/login/", timeout=5) as page:
                    if page.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = str(exc)
            time.sleep(0.25)  # a poll interval under a deadline, not a guess at readiness
        raise RuntimeError(
            f"{self.base_url}/admin/login/ did not answer 200 in {timeout}s: {last_error}"
        )

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Read the demo's database directly: what the pages show is checked against it."""
        with contextlib.closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 20000")
            return db.execute(sql, params).fetchall()

    def stop(self) -> None:
        """SIGTERM every process group, wait for them within a grace period, kill the rest."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            # Also the task processes the worker forked, when the worker itself is gone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait(10)
        for log in self._logs:
            log.close()
