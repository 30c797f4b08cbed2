"""Rescue: runs whose lease ran out (their worker died, froze, or lost the database) go back.

Any live worker does it, every TASKMILL_RESCUE_INTERVAL seconds. The rows are taken with
SKIP LOCKED (an atomic task's row, locked by its transaction, is passed over), and each
UPDATE repeats the lease condition, so a stale read can never revert a run that finished.

- A run that was claimed but never started (prefetched) goes back as if never claimed.
- A run whose stop was requested is cancelled.
- Otherwise the attempt is recorded as lost ("worker lost") and the run is READY again,
  whatever its max_attempts (a SIGKILL at deploy is not the task's fault), up to
  TASKMILL_MAX_LOST_ATTEMPTS lost attempts, after which it fails: a task that crashes its
  worker must not loop forever.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from ... import registry
from ...conf import setting
from ...db import get_engine
from ...db.records import Landed
from ...exceptions import RunCancelled, WorkerLost, synthetic_error
from ...followups import Settling, settle, settle_strays
from ...limits.gate import freed_keys
from ...logs import ATTEMPT, OUTCOME, RUN_ID, TASK
from ...status import RunStatus
from ...tasks import expiry_for
from ..lost import lost_attempt
from .base import Duty

logger = logging.getLogger("taskmill.worker")

# Runs rescued per transaction, and per pass at most. A rescue's transaction is all or
# nothing, and every run in it keeps its limits' slots until it commits: the long PostgreSQL
# soak, at load 10-15 on two cores, took 0.8-3.5 s over 60-90 runs in one transaction, and a
# cut session, a restart or the rescuer's own death meanwhile rolled them all back, again
# and again (slots held 4-5 s past their leases). A few at a time, each share is free once
# it is done, and a fault undoes one share only.
CHUNK = 10
BATCH = 100
# Now and then (every 12 passes, a minute by default) settle WAITING runs left behind by a
# worker that died between finishing their dependency and settling them.
SWEEP_EVERY_PASSES = 12


class Lifeline(Duty):
    name = "lifeline"

    def __init__(self, database: str, on_rescued: Any = None) -> None:
        self.database = database
        self.interval = float(setting("TASKMILL_RESCUE_INTERVAL"))
        self.on_rescued = on_rescued
        self.rescued = 0
        self.passes = 0

    def run(self, now: datetime) -> float:
        self.passes += 1
        if self.passes % SWEEP_EVERY_PASSES == 1:
            settle_strays(self.database)
        for _ in range(BATCH // CHUNK):
            found, count = rescue_expired(self.database, now)
            self.rescued += count
            if count and self.on_rescued is not None:
                self.on_rescued()
            if found < CHUNK:
                break
        return self.interval


def rescue_expired(database: str, now: datetime, limit: int = CHUNK) -> tuple[int, int]:
    """Rescue up to ``limit`` runs whose lease expired before ``now``, in one transaction;
    return how many were found and how many rescued. Each rescue is logged once its
    transaction has committed: one rolled back (a cut session, a restart) says nothing."""
    engine = get_engine(database)
    rescued: list[tuple[dict[str, Any], str]] = []
    with transaction.atomic(using=database):
        settling = []
        rows = engine.expired_runs(now, limit)
        for row in rows:
            values, final = _rescued_state(row, now)
            if not engine.rescue(row["id"], row["attempt"], now, values):
                continue
            rescued.append((row, values["status"]))
            # Final or READY again, it leaves RUNNING: its limits' slots are free.
            task = registry.resolve_or_none(row["task_path"]) if final else None
            landed = Landed(
                row["id"], row["attempt"], values["status"], row["has_dependents"], row["batch_id"]
            )
            frees = freed_keys(row["queue_name"], row["concurrency_key"])
            settling.append(Settling(landed, task, frees=frees))
            if not final and values.get("due"):
                engine.notify(row["queue_name"])
        if settling:
            settle(database, settling)
    for row, status in rescued:
        logger.warning(
            "Rescued run %s (attempt %s of worker %s): %s",
            row["id"],
            row["attempt"],
            row["worker_id"],
            status,
            extra={
                RUN_ID: row["id"],
                TASK: row["task_path"],
                ATTEMPT: row["attempt"],
                OUTCOME: status,
            },
        )
    return len(rows), len(rescued)


def _rescued_state(row: dict[str, Any], now: datetime) -> tuple[dict[str, Any], bool]:
    common = {"worker_id": "", "lease_expires_at": None, "prefetched": False}
    if row["stop_requested"]:
        error = synthetic_error(RunCancelled, "stopped on request; its worker was lost meanwhile")
        return _final(row, RunStatus.CANCELLED, error, now, common), True
    if row["prefetched"]:
        # Never started: as if never claimed. The attempt number stays (it is the fencing
        # token: the lost worker may still wake up holding it).
        return {
            **common,
            "status": RunStatus.READY,
            "due": True,
            "available_at": now,
            "worker_ids": row["worker_ids"][:-1],
        }, False
    # A lost attempt, by the one lost-attempt policy (worker/lost.py); due at once, not backed
    # off as the worker's own lost attempts are: a whole lease has passed since it was lost.
    lost = lost_attempt(row["errors"])
    why = f"the worker {row['worker_id']} running attempt {row['attempt']} was lost"
    error = synthetic_error(WorkerLost, lost.because(why))
    if lost.final:
        return _final(row, RunStatus.FAILED, error, now, common), True
    return {
        **common,
        "status": RunStatus.READY,
        "due": True,
        "available_at": now,
        "errors": [*row["errors"], error],
    }, False


def _final(
    row: dict[str, Any], status: str, error: dict[str, str], now: datetime, common: dict
) -> dict[str, Any]:
    task = registry.resolve_or_none(row["task_path"])
    return {
        **common,
        "status": status,
        "finished_at": now,
        "expires_at": expiry_for(task, row["options"], now, status),
        "errors": [*row["errors"], error],
    }
