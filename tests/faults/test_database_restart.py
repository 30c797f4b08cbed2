"""A database restart mid-drain fails no run: issue 21's failover, for real.

Two real workers drain 1,500 runs of a plain ``@task`` that writes a row while the server
restarts (``pg_ctl restart -m fast``; MariaDB's clean shutdown and start). The runs whose own
statement met the restart (a terminated session, a refused connection) go again as a lost
worker's would: all 1,500 end SUCCESSFUL, none FAILED, each row is there, and a row written
twice belongs to a run the restart interrupted (at-least-once, as after a lost worker).

It runs tests/faults/restart_drain.py in a process of its own, against a private server it
starts and restarts (the shared one serves other test runs), as the chaos soak does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_database_restart_mid_drain_fails_no_run():
    vendor = connection.vendor
    if vendor == "sqlite":
        pytest.skip("SQLite has no server to restart (its locked database: test_database_outages)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKMILL_")}
    finished = subprocess.run(
        [sys.executable, "-m", "tests.faults.restart_drain", "--db", vendor],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    line = next(line for line in finished.stdout.splitlines() if line.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    shown = json.dumps(found, indent=1)[:6000]
    # The restart came mid-drain, and the drain went on after it.
    assert 0 < found["done_before_restart"] < found["runs"], shown
    assert found["drained"], shown
    # Every run SUCCESSFUL: none failed, none left behind.
    assert found["statuses"] == {"SUCCESSFUL": found["runs"]}, shown
    assert found["missing_rows"] == [], shown
    # The restart did meet running tasks (else this proved nothing), and only those may have
    # written their row twice.
    assert found["interrupted"], shown
    assert set(found["doubled_rows"]) <= set(map(str, found["interrupted"])), shown
    # Both workers lived through it and stopped cleanly.
    assert found["exit_codes"] == [0, 0], shown
