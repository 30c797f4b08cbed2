"""The benchmark's surroundings: requirements, its own database, Django set-up, machine facts."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SETTINGS = "bench.settings"
# Where taskmill is imported from: the work tree, or a snapshot of a commit (--taskmill-rev).
TASKMILL_SRC = REPO
TASKMILL_DESC = ""

TASKMILL = "taskmill"
PEER = "django-tasks-db"


# -- set-up -----------------------------------------------------------------------------------


def check_requirements() -> None:
    missing = []
    for module, package in (
        ("django", "Django>=6.0"),
        ("psycopg", "psycopg[binary]"),
        ("django_tasks_db", "django-tasks-db"),
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        sys.exit(
            f"bench: missing package(s): {', '.join(missing)}.\n"
            f"Install them with:  pip install -r {REPO / 'bench' / 'requirements.txt'}"
        )
    try:
        import django.tasks  # noqa: F401
    except ImportError:
        sys.exit("bench: needs Django 6.0+ (django.tasks); both systems are compared on it.")


def server_params() -> dict[str, Any]:
    return {
        "host": os.environ.get("TASKMILL_BENCH_PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("TASKMILL_BENCH_PGPORT", "5432")),
        "user": os.environ.get("TASKMILL_BENCH_PGUSER", "postgres"),
        "password": os.environ.get("TASKMILL_BENCH_PGPASSWORD", "") or None,
    }


def admin_sql(*statements: str) -> None:
    """Run statements on the server's maintenance database (CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **server_params()) as conn:
        for statement in statements:
            conn.execute(statement)


def create_database(name: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    from django.db import connections

    connections.close_all()
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_taskmill_rev(rev: str | None) -> None:
    """Import taskmill from a snapshot of commit ``rev`` instead of the work tree.

    The work tree may be mid-edit while the benchmark runs; a snapshot is what was committed.
    """
    global TASKMILL_SRC, TASKMILL_DESC

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    if rev is None:
        try:
            head = git("rev-parse", "--short", "HEAD")
            dirty = git("status", "--porcelain", "--", "taskmill")
        except (OSError, subprocess.CalledProcessError):
            TASKMILL_DESC = "work tree (not a git checkout)"
            return
        extra = " + uncommitted changes in taskmill/" if dirty else ""
        TASKMILL_DESC = f"work tree at {head}{extra}"
        return
    sha = git("rev-parse", "--short", f"{rev}^{{commit}}")
    target = Path(tempfile.mkdtemp(prefix="taskmill-bench-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", sha, "taskmill"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    TASKMILL_SRC = target
    TASKMILL_DESC = f"commit {sha} ({rev}), snapshot in {target}"


def setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    for path in (REPO, TASKMILL_SRC):  # TASKMILL_SRC ends up first
        if str(path) in sys.path:
            sys.path.remove(str(path))
        sys.path.insert(0, str(path))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def machine_facts(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import django
    from django.db import connection

    import taskmill

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        sync_commit = cursor.fetchone()[0]
    try:
        dtdb_version = version("django-tasks-db")
    except PackageNotFoundError:
        dtdb_version = "?"
    return {
        "cpu_cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "postgresql": pg_version,
        "synchronous_commit": sync_commit,
        "python": platform.python_version(),
        "django": django.get_version(),
        "taskmill": f"{taskmill.__version__}, {TASKMILL_DESC}",
        "django_tasks_db": dtdb_version,
        "runs_N": args.runs,
        "enqueue_runs": args.enqueue_runs,
        "latency_samples_M": args.latency_samples,
        "repeats": args.repeat,
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    """The 1/5/15-minute load: anything else running on the machine skews every figure."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def git_head() -> str:
    """The commit measured, and whether taskmill/ differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--", "taskmill")
        return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"
