"""The pruner duty: every TASKMILL_PRUNE_INTERVAL seconds, a bounded pass of the pruning
service (taskmill.pruning): finished runs past their time-to-live, old rollups, the rows of
dead workers, finished batches left with no member, limits' keys that hold nothing back.

A pass stops after ``MAX_BATCHES_PER_PASS`` batches: the pruner shares its thread with the
lifeline, which must not wait behind a backlog of millions. While a backlog lasts, the pass
asks to come back sooner (``BACKLOG_INTERVAL``) instead of falling further behind.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ...conf import setting
from ...pruning import (
    prune_empty_batches,
    prune_limit_keys,
    prune_runs,
    prune_stats,
    prune_workers,
)
from .base import Duty

logger = logging.getLogger("taskmill.worker")

MAX_BATCHES_PER_PASS = 10
# How soon a worker's next pass comes when the last one stopped at its bound (seconds).
BACKLOG_INTERVAL = 1.0


class Pruner(Duty):
    name = "pruner"

    def __init__(self, database: str) -> None:
        self.database = database
        self.interval = float(setting("TASKMILL_PRUNE_INTERVAL"))
        self.batch_size = max(1, int(setting("TASKMILL_PRUNE_BATCH")))
        self.pruned = 0

    def run(self, now: datetime) -> float:
        runs = prune_runs(
            self.database,
            expired_before=now,
            batch_size=self.batch_size,
            max_batches=MAX_BATCHES_PER_PASS,
        )
        workers = prune_workers(self.database, now)
        prune_stats(self.database, now)
        prune_empty_batches(self.database, now)
        prune_limit_keys(self.database)
        self.pruned += runs
        if runs or workers:
            logger.info("Pruned %d finished run(s) and %d worker row(s)", runs, workers)
        backlog = runs >= self.batch_size * MAX_BATCHES_PER_PASS
        return min(self.interval, BACKLOG_INTERVAL) if backlog else self.interval
