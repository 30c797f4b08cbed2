"""The scheduler duty: each worker fires the schedules that are due (unless it was started
with --no-scheduler). One pass is one pass of the scheduler loop (taskmill.scheduler.loop),
errors survived with its back-off; its own thread, since a fire can wait for its time.

Any number of workers may fire at once: the fire transaction makes each fire happen once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import connections

from ...scheduler.loop import Scheduler, SchedulerOptions
from .base import Duty

logger = logging.getLogger("taskmill.scheduler")


class SchedulerDuty(Duty):
    name = "scheduler"

    def __init__(self, database: str, max_sleep: float = 1.0) -> None:
        self.database = database
        self.interval = max_sleep
        self.scheduler = Scheduler(SchedulerOptions(database=database, max_sleep=max_sleep))

    def start(self) -> None:
        """Sync the schedules declared in code, on the starting thread.

        A failed sync is not fatal: the worker still runs tasks and fires the schedules
        already stored. An invalid declaration is logged; a database error (the database
        away) is retried by the scheduler's passes, before its first fire, until it passes.
        """
        from ...scheduler.declarations import autodiscover

        try:
            autodiscover()
            self.scheduler.sync_at_start()
        except Exception:
            logger.exception("Could not sync the schedules declared in code")
        finally:
            connections[self.database].close()  # opened on the starting thread: leave it clean
        logger.info("Scheduler started: database=%s", self.database)

    def run(self, now: datetime) -> float:
        return self.scheduler.next_pass()

    def stop(self) -> None:
        self.scheduler.request_stop()  # ends a pass waiting for a fire time
        logger.info("Scheduler stopped after %d run(s) enqueued", self.scheduler.fired)
