"""Staging: deferred runs (run_after, retry delays) become claimable when their time comes.

The claim index holds only due runs, so claims never scan runs waiting for later; this
duty flips ``due`` on those whose time has come, reading only the stage index. The worker's
own loop runs it (what it finds is work for that loop to claim), at most once a second.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ...db import Engine
from .base import Duty


class Stager(Duty):
    name = "stager"

    def __init__(self, engine: Engine, interval: float, on_staged: Callable[[], None]) -> None:
        self.engine = engine
        self.interval = interval
        self.on_staged = on_staged

    def run(self, now: datetime) -> float:
        if self.engine.stage_due(now):
            self.on_staged()
        return self.interval
