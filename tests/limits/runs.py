"""What the limits tests read of runs and workers: waiting for every run to succeed, a run's
held-back state, and how busy a worker process kept the CPU."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from taskmill.models import Run, RunStatus
from tests.conftest import wait_until
from tests.limits.ledger import started

# An idle worker (a heartbeat, the releaser's look every second) uses a few percent of a
# CPU (measured: 1-3% here); one claiming and giving back held runs in a loop uses all it
# can get.
IDLE_SHARE = 0.25


def left() -> list[tuple]:
    return list(
        Run.objects.exclude(status=RunStatus.SUCCESSFUL).values_list(
            "id", "task_path", "status", "due", "held_by", "attempt"
        )[:20]
    )


def all_done(timeout: float = 120.0) -> None:
    def done() -> bool:
        return not Run.objects.exclude(status=RunStatus.SUCCESSFUL).exists()

    wait_until(done, timeout, interval=0.2, message=lambda: str(left()))


def no_errors() -> None:
    assert not Run.objects.exclude(errors=[]).exists()
    # Held-back runs used no attempt: each ran once.
    assert set(Run.objects.values_list("attempt", flat=True)) == {1}


def ids(results: Iterable[Any]) -> list[int]:
    return [int(result.id) for result in results]


def holder(task: Any, key: str | None = None) -> str:
    """The ``held_by`` of a run of ``task`` that its concurrency limit holds back."""
    return f"concurrency:{task.module_path}" + (f":{key}" if key is not None else "")


def held(run_ids: Iterable[int], by: str) -> int:
    """How many of ``run_ids`` are held back by ``by`` as a held run must be: READY, not due,
    no attempt used, no worker named, no error written."""
    return Run.objects.filter(
        pk__in=list(run_ids),
        status=RunStatus.READY,
        due=False,
        held_by=by,
        attempt=0,
        worker_ids=[],
        errors=[],
    ).count()


def wait_held(run_ids: list[int], by: str, timeout: float = 30.0) -> None:
    wait_until(
        lambda: held(run_ids, by) == len(run_ids),
        timeout,
        interval=0.1,
        message=lambda: f"{len(run_ids)} runs held by {by}: {left()}",
    )


def wait_started(record_dir: Path, name: str, timeout: float = 60.0, worker: Any = None) -> None:
    """Until the attempt ``name`` ("blocker.1") has begun its body."""
    wait_until(
        lambda: name in started(record_dir),
        timeout,
        message=lambda: (
            f"{name} to start; started {started(record_dir)}; runs {left()}"
            + (f"\nworker said:\n{worker.output}" if worker is not None else "")
        ),
    )


def cpu_seconds(pid: int) -> float:
    """The CPU time the process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_share(pid: int, seconds: float, look: Any = None) -> float:
    """The share of one CPU the process used over ``seconds`` of wall time, calling ``look``
    (an assertion about the runs, say) every 50 ms meanwhile. A measure over a window,
    not a wait for something to happen."""
    cpu, began = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - began < seconds:
        if look is not None:
            look()
        time.sleep(0.05)
    return (cpu_seconds(pid) - cpu) / (time.monotonic() - began)
