"""Virtualenvs, fresh databases, and the adapter subprocesses that measure inside them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .environment import REPO, admin_sql, server_params
from .systems import System

PEERS_DIR = REPO / "bench" / "peers"
VENVS = REPO / ".venv"
PIDS_FILE = Path(tempfile.gettempdir()) / f"bench-worker-pids-{os.getpid()}"


class PeerError(Exception):
    """A system failed to install, set up or measure: its cells say so, the run goes on."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- virtualenvs ------------------------------------------------------------------------------


def venv_python(system: System) -> str:
    """The Python that runs this system's adapter; creates its venv when missing or stale."""
    if not system.own_venv:
        return sys.executable
    venv = VENVS / f"bench-{system.name}"
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    wanted = hashlib.sha256("\n".join(system.requirements).encode()).hexdigest()
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python)
    log(f"  creating {venv} ({', '.join(system.requirements)})")
    try:
        if not python.exists():
            subprocess.run([system.python, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *system.requirements],
            check=True,
            timeout=900,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise PeerError(f"install failed: {(exc.stderr or '')[-300:]}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerError(f"install failed: {exc}") from None
    marker.write_text(wanted)
    return str(python)


# -- databases --------------------------------------------------------------------------------


def db_name(system: System, engine: str = "postgresql") -> str:
    return f"bench_{system.name.replace('-', '_')}" + ("" if engine == "postgresql" else "_e")


def create_pg(name: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def drop_pg(name: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mysql_admin(statement: str) -> None:
    import MySQLdb

    conn = MySQLdb.connect(
        host=os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("BENCH_MYSQL_PORT", "3306")),
        user=os.environ.get("BENCH_MYSQL_USER", "root"),
        password=os.environ.get("BENCH_MYSQL_PASSWORD", ""),
    )
    try:
        conn.cursor().execute(statement)
    finally:
        conn.close()


def system_env(system: System, database: str, engine: str, redis_db: int) -> dict[str, str]:
    p = server_params()
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("PYTHONPATH", None)
    paths = [str(PEERS_DIR)] + ([str(REPO)] if not system.own_venv else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    password = f":{p['password']}" if p["password"] else ""
    env["BENCH_DSN"] = f"postgresql://{p['user']}{password}@{p['host']}:{p['port']}/{database}"
    env["BENCH_DB_NAME"] = database
    env["BENCH_ENGINE"] = engine
    env["BENCH_PGHOST"], env["BENCH_PGPORT"] = p["host"], str(p["port"])
    env["BENCH_PGUSER"], env["BENCH_PGPASSWORD"] = p["user"], p["password"] or ""
    env["BENCH_REDIS_URL"] = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379") + (
        f"/{redis_db}"
    )
    env["BENCH_PIDS_FILE"] = str(PIDS_FILE)
    env.update(system.extra)
    return env


class Session:
    """One system's run: its venv, its fresh database, its adapter calls."""

    def __init__(self, system: System, engine: str = "postgresql", redis_db: int = 13):
        self.system, self.engine = system, engine
        self.python = venv_python(system)
        self.database = db_name(system, engine)
        if engine == "sqlite":
            self.database = str(Path(tempfile.mkdtemp(prefix="bench-sqlite-")) / "bench.sqlite3")
        self.env = system_env(system, self.database, engine, redis_db)
        self.created = False

    def __enter__(self) -> Session:
        if self.system.backend == "pg":
            if self.engine == "postgresql":
                create_pg(self.database)
            elif self.engine == "mysql":
                mysql_admin(f"DROP DATABASE IF EXISTS `{self.database}`")
                mysql_admin(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
            self.created = True
        self.call("setup", {}, timeout=600)
        return self

    def __exit__(self, *exc: object) -> None:
        kill_leftover_workers()
        if not self.created:
            return
        try:
            if self.engine == "postgresql":
                drop_pg(self.database)
            elif self.engine == "mysql":
                mysql_admin(f"DROP DATABASE IF EXISTS `{self.database}`")
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(self.database + suffix).unlink(missing_ok=True)
                Path(self.database).parent.rmdir()
        except Exception as exc:  # cleanup must not hide the figures
            log(f"  could not drop {self.database}: {exc}")

    def call(self, measure: str, params: dict[str, Any], timeout: float = 1800) -> Any:
        adapter = PEERS_DIR / f"{self.system.adapter}.py"
        request = json.dumps({"measure": measure, "params": params})
        try:
            proc = subprocess.run(
                [self.python, str(adapter), request],
                env=self.env,
                cwd=PEERS_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            kill_leftover_workers()
            raise PeerError(f"{measure} timed out after {timeout:.0f}s") from None
        lines = proc.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise PeerError(
                f"{measure}: adapter exited {proc.returncode}: {proc.stderr.strip()[-400:]}"
            ) from None
        if not answer["ok"]:
            log(proc.stderr[-2000:])
            raise PeerError(answer["error"])
        return answer["result"]


def kill_leftover_workers() -> None:
    """Kill the session of every worker an adapter started that is still there (by its id)."""
    if not PIDS_FILE.exists():
        return
    for line in PIDS_FILE.read_text().split():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(line), signal.SIGKILL)
    PIDS_FILE.unlink(missing_ok=True)
