"""Private database servers for the soak, so that it can restart them.

The machine's shared PostgreSQL and MariaDB serve the other test suites running at the same
time; restarting them would break those. The soak starts its own server from the same
binaries, on its own port and data directory under a temporary folder, restarts it as a
chaos action (a clean fast shutdown or a crash-like immediate one) and removes it at the end.
SQLite has no server: ``NoServer`` stands in for it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, deadline: float, what: str) -> None:
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not open port {port} in time")
        time.sleep(0.05)


class NoServer:
    """SQLite: nothing to start, nothing to restart."""

    vendor = "sqlite"
    port = 0
    restartable = False

    def start(self) -> None:
        pass

    def restart(self, crash: bool) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def env(self) -> dict[str, str]:
        return {}


class PostgresServer:
    vendor = "postgresql"
    restartable = True

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="taskmill-soak-pg-"))
        self.data = self.root / "data"
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(bins[-1])

    def _as_postgres(self, *command: str) -> list[str]:
        # The server refuses to run as root: run its tools as the postgres user.
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else [*command]

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            self._as_postgres(
                str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8",
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            # fsync off: only the server crashes here, never the machine, so what the server
            # wrote survives in the page cache. Commits stay synchronous: a crash-restart must
            # not lose a commit the client was told about.
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            self._as_postgres(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
                "-l", str(self.root / "server.log"), action, *extra,
            ),
            check=True,
            capture_output=True,
        )  # fmt: skip

    def restart(self, crash: bool) -> float:
        """Restart the server; ``crash``: immediate mode (no checkpoint, recovery at start).
        Returns how long it was down."""
        began = time.monotonic()
        self._pg_ctl("restart", "-m", "immediate" if crash else "fast")
        return time.monotonic() - began

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {"TASKMILL_PG_HOST": "127.0.0.1", "TASKMILL_PG_PORT": str(self.port)}


class MariaDBServer:
    vendor = "mysql"
    restartable = True

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="taskmill-soak-mariadb-"))
        self.data = self.root / "data"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        subprocess.run(
            [
                "mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
                "--auth-root-authentication-method=normal", "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self._launch()

    def _launch(self) -> None:
        log = open(self.root / "server.log", "a")  # noqa: SIM115 (the server keeps it)
        self.process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}",
                f"--port={self.port}", "--bind-address=127.0.0.1",
                f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'mysqld.pid'}",
                "--user=root", "--skip-grant-tables", "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=128M",
                "--max-connections=300", "--character-set-server=utf8mb4",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, time.monotonic() + 60, "MariaDB")

    def restart(self, crash: bool) -> float:
        """SIGTERM (clean shutdown) or SIGKILL (a crash: recovery at start), then start."""
        began = time.monotonic()
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL if crash else signal.SIGTERM)
        self.process.wait(60)
        self._launch()
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {"TASKMILL_MYSQL_HOST": "127.0.0.1", "TASKMILL_MYSQL_PORT": str(self.port)}


def server_for(vendor: str) -> NoServer | PostgresServer | MariaDBServer:
    return {"sqlite": NoServer, "postgresql": PostgresServer, "mysql": MariaDBServer}[vendor]()
