"""Tasks the scheduler tests put on schedules."""

from __future__ import annotations

import os
from pathlib import Path

from taskmill.compat import task


@task
def heartbeat(label: str = "", fired_at: str | None = None) -> str | None:
    return fired_at


@task
def record_fire(label: str = "", fired_at: str | None = None) -> None:
    # One line per run in this process's file: what fired, for which time.
    directory = os.environ.get("TASKMILL_TEST_RECORD_DIR")
    if directory:
        with open(Path(directory) / f"{os.getpid()}.log", "a") as log:
            log.write(f"{label} {fired_at}\n")
