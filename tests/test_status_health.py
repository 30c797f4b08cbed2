"""``manage.py taskmill status`` and ``health``: real processes, real exit statuses."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from taskmill.batches.opening import batch
from taskmill.models import Queue, Worker
from tests.conftest import ROOT, wait_until
from tests.test_overview import make_run, make_schedule, make_worker
from tests.testapp import tasks

# Real processes and commands: the main leg runs this on every database (see scripts/test).
pytestmark = pytest.mark.slow


def taskmill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "taskmill", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("taskmill", "status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_live_worker_makes_health_ok_and_status_shows_it(start_worker, subprocess_env):
    worker = start_worker("--queue", "emails", "--concurrency", "3", "--label", "mail")
    row = wait_until(
        lambda: Worker.objects.filter(pid=worker.process.pid, state="running").first(),
        timeout=180,
        message="the worker's row",
    )
    make_run("default", available_at=timezone.now() - timedelta(seconds=30))

    healthy = taskmill(subprocess_env, "health")
    assert (healthy.returncode, healthy.stdout, healthy.stderr) == (0, "ok\n", "")

    shown = taskmill(subprocess_env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert list(document) == [
        "database",
        "generated_at",
        "lease",
        "queues",
        "workers",
        "late_schedules",
        "orphaned_runs",
        "unknown_tasks",
        "open_batches",
    ]
    (listed,) = document["workers"]
    assert listed["id"] == row.id and listed["id"].startswith("mail@")
    assert listed["alive"] is True and listed["state"] == "running"
    assert (listed["queues"], listed["concurrency"], listed["pid"]) == (
        ["emails"],
        3,
        worker.process.pid,
    )
    assert datetime.fromisoformat(listed["last_heartbeat_at"]).tzinfo is not None
    # Every configured queue (tests/settings.py), the idle ones with zeros.
    queues = {queue["name"]: queue for queue in document["queues"]}
    assert sorted(queues) == ["default", "emails", "erp", "high", "low", "reports"]
    assert queues["default"]["ready"] == 1 and queues["low"]["ready"] == 0

    # In this process from here: a process start costs seconds on a loaded machine.
    table = status()
    assert "Workers (1 alive of 1 not stopped)" in table
    worker_line = next(line for line in table.splitlines() if row.id in line)
    assert worker_line.split()[1] == "running" and worker_line.split()[-2:] == ["0/3", "emails"]

    # A ready run older than the threshold, in a queue this worker does not serve.
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("taskmill", "health", "--max-ready-age", "5", stderr=stderr)
    assert exited.value.code == 1
    (problem,) = stderr.getvalue().splitlines()
    assert problem.startswith("problem: queue 'default': 1 ready, the oldest waiting")
    assert problem.endswith("(more than 5s)")


@pytest.mark.django_db(transaction=True)
def test_health_names_every_problem_on_stderr_and_exits_1(subprocess_env):
    now = timezone.now()
    make_worker("long-gone", now - timedelta(hours=1))
    make_run("default", available_at=now - timedelta(minutes=20))
    make_run("low", available_at=now - timedelta(hours=2))
    Queue.objects.create(name="low", paused=True, paused_at=now)
    make_schedule("nightly", now - timedelta(minutes=5))

    result = taskmill(subprocess_env, "health", "--schedule-grace", "120")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("problem: no worker is alive")
    assert lines[1].startswith("problem: queue 'default': 1 ready, the oldest waiting 1,2")
    assert re.fullmatch(r"problem: schedule 'nightly' is 3\d\ds late \(due \S+\)", lines[2])
    assert lines[3].startswith("note: queue 'low'") and lines[3].endswith("(paused, not counted)")
    assert len(lines) == 4 and "Traceback" not in result.stderr

    # The same state within looser thresholds: only the dead worker is left.
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command(
            "taskmill",
            "health",
            "--max-ready-age",
            "86400",
            "--schedule-grace",
            "600",
            stderr=stderr,
        )
    assert exited.value.code == 1
    assert stderr.getvalue().splitlines() == [lines[0]]


def _unreachable(env: dict[str, str]) -> dict[str, str]:
    """The same settings, pointed at a server that is not there."""
    if connection.vendor == "postgresql":
        return {**env, "TASKMILL_PG_PORT": "1"}
    if connection.vendor == "mysql":
        return {**env, "TASKMILL_MYSQL_PORT": "1"}
    return {**env, "TASKMILL_TEST_DB_NAME": str(ROOT / "no-such-directory" / "db.sqlite3")}


@pytest.mark.parametrize("subcommand", ["health", "status"])
def test_a_database_out_of_reach_is_exit_2_and_one_clear_line(subprocess_env, subcommand):
    result = taskmill(_unreachable(subprocess_env), subcommand)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith("CommandError: Cannot read the database 'default' (")
    assert len(result.stderr.strip().splitlines()) <= 2  # psycopg adds a hint line


@pytest.mark.django_db
def test_status_tables_list_queues_late_schedules_and_orphans():
    now = timezone.now()
    make_run("default", available_at=now - timedelta(minutes=3))
    make_run("default", due=False, available_at=now + timedelta(hours=1))
    Queue.objects.create(name="emails", paused=True, paused_at=now)
    make_schedule("nightly", now - timedelta(hours=3))
    orphan = make_run("high", "RUNNING", worker_id="gone", lease_expires_at=now)

    lines = status().splitlines()
    assert lines[0].startswith("taskmill status of database 'default' at ")
    queues = lines[lines.index("Queues (6)") + 1 :]  # the configured ones, idle too
    assert queues[0].split() == [
        "QUEUE",
        "READY",
        "DEFERRED",
        "WAITING",
        "RUNNING",
        "HELD",
        "OLDEST",
        "READY",
        "PAUSED",
    ]
    assert queues[1].split()[:6] == ["default", "1", "1", "0", "0", "0"]
    assert re.fullmatch(r"3m0\ds", queues[1].split()[6])
    assert queues[2].split()[:8] == ["emails", "0", "0", "0", "0", "0", "-", "since"]
    assert queues[3].split() == ["erp", "0", "0", "0", "0", "0", "-", "no"]
    assert queues[4].split() == ["high", "0", "0", "0", "1", "0", "-", "no"]
    assert queues[5].split() == ["low", "0", "0", "0", "0", "0", "-", "no"]
    # erp's limit, from the settings (tests/settings.py), in the limits' table.
    limits = lines[lines.index("Limits: queues limited or holding runs back (1)") + 2]
    assert limits.split() == [
        "erp",
        "2",
        "at",
        "once",
        "settings",
        "0",
        "of",
        "2",
        "in",
        "use",
        "0",
        "-",
    ]
    assert "Workers (0 alive of 0 not stopped)" in lines
    late = lines[lines.index("Late schedules (1)") + 2]
    assert late.split()[0] == "nightly" and late.split()[3] == "3h00m"
    orphans = lines[lines.index("Orphaned runs: lease expired, not rescued yet (1)") + 2]
    assert orphans.split()[:4] == [str(orphan), "tests.testapp.tasks.noop", "high", "gone"]


@pytest.mark.django_db
def test_status_reads_the_database_it_is_given():
    with pytest.raises(CommandError, match="no database named 'nope'"):
        status("--database", "nope")
    with pytest.raises(CommandError, match="no TASKS backend named 'nope'"):
        status("--backend", "nope")
    with pytest.raises(CommandError, match="not allowed with argument"):
        status("--database", "default", "--backend", "default")
    assert json.loads(status("--json", "--database", "default"))["database"] == "default"


@pytest.mark.django_db
def test_status_counts_the_open_batches():
    assert "Batches: 0 open (members still to end)" in status().splitlines()
    with batch():  # nothing in it: finished at its seal
        pass
    with batch():
        tasks.noop.enqueue()
    assert "Batches: 1 open (members still to end)" in status().splitlines()
    assert json.loads(status("--json"))["open_batches"] == 1
