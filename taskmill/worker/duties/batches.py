"""The batch sweeper duty: now and then, a bounded look for sealed batches stalled by a
member that vanished (taskmill.batches.sweep), going round them all pass after pass."""

from __future__ import annotations

import logging
from datetime import datetime

from ...batches.sweep import sweep_stalled
from .base import Duty

logger = logging.getLogger("taskmill.worker")


class BatchSweeper(Duty):
    name = "batch sweeper"
    # A stalled batch is a rare repair, not a hot path: every worker looks twice a minute.
    interval = 30.0

    def __init__(self, database: str) -> None:
        self.database = database
        self.after_id = 0  # the last batch looked at: the next pass goes on from there
        self.repaired = 0

    def run(self, now: datetime) -> float:
        result = sweep_stalled(self.database, now, after_id=self.after_id)
        self.after_id = result.last_id
        self.repaired += len(result.repaired)
        return self.interval
