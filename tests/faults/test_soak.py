"""The chaos soak's CI profile, run by the test command on every database (see
docs/reliability.md; ``python -m tests.faults.soak`` runs it alone, and the long profile).

It runs in its own process with its own private database server (it restarts that server),
so it does not touch this test run's database. Its table goes to the test summary.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SOAK_TABLES: list[str] = []  # printed by tests/faults/conftest.py at the end of the run


def test_chaos_soak_loses_doubles_and_misses_nothing():
    vendor = connection.vendor
    command = [sys.executable, "-m", "tests.faults.soak", "--db", vendor, "--profile", "ci"]
    if os.environ.get("TASKMILL_SOAK_SEED"):
        command += ["--seed", os.environ["TASKMILL_SOAK_SEED"]]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKMILL_")}
    finished = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    output = finished.stdout + finished.stderr
    SOAK_TABLES.append(finished.stdout.strip())
    if finished.returncode != 0 and _only_slow_slots(output):
        # Issue 23, open: under chaos a freed slot is sometimes let go only at the 30 s
        # backstop (a delay, never a limit passed). Every other column still fails here.
        pytest.xfail("only 'slot leaked' (held runs let go at the backstop): issue 23")
    assert finished.returncode == 0, output


def _only_slow_slots(output: str) -> bool:
    """Whether the soak's only problems are slots let go late (``slot_leaked`` lines)."""
    problems = [
        line.strip()
        for line in output.splitlines()
        if line.startswith("  ")
        and ": " in line
        and line.strip().split(":", 1)[0].isidentifier()
        and line.strip().split(":", 1)[0] in PROBLEM_COUNTERS
    ]
    return bool(problems) and all(line.startswith("slot_leaked:") for line in problems)


# The checker's problem counters (tests/faults/soak/checker.py), as its lines begin.
PROBLEM_COUNTERS = {
    "lost",
    "doubled",
    "missing_fires",
    "double_fires",
    "stuck",
    "wrong",
    "limit_exceeded",
    "slot_leaked",
}
