"""The graceful stop: stop claiming, give back unstarted runs, let running tasks finish
within the shutdown timeout, then return what still runs to the queue; and the emergency
exit of a second signal.

A mixin of the worker (``taskmill.worker.loop.Worker``), whose state it reads and changes:
its own module so that the loop's module holds the claim/flush cycle alone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from ..db import ClaimedRun, Engine
    from .executor import Executor
    from .loop import WorkerOptions

logger = logging.getLogger("taskmill.worker")


class GracefulStop:
    """The worker's stop requests and what it does while stopping."""

    # Set by the worker (see taskmill.worker.loop.Worker.__init__).
    id: str
    options: WorkerOptions
    engine: Engine
    _executor: Executor
    _stopping: bool
    _stop_deadline: float | None
    _outstanding: int
    _claim_in_doubt: bool
    _to_release: list[ClaimedRun]
    abandoned_tasks: bool

    def request_stop(self) -> None:
        """Stop claiming, finish what runs (within the shutdown timeout), then return."""
        if not self._stopping:
            logger.info(
                "Worker %s stopping: finishing %d running task(s)",
                self.id,
                len(self._executor.started()),
            )
            self._stopping = True
            self._stop_deadline = time.monotonic() + self.options.shutdown_timeout
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _finish_stopping(self) -> bool:
        """While stopping: give back unstarted runs, wait for running ones; True when done."""
        if self._claim_in_doubt:
            self._return_orphans(timezone.now())
        # Kept until written: a release the database fails (a deadlock) is tried again.
        self._to_release += self._executor.take_waiting()
        waiting = self._to_release
        if waiting:
            released = self.engine.release(waiting, now=timezone.now(), started=False)
            self._to_release = []
            self._outstanding -= len(waiting)
            self._let_go(waiting)
            logger.info("Returned %d unstarted run(s) to the queue", released)
        if self._outstanding and time.monotonic() < (self._stop_deadline or 0):
            return False
        self._collect_done()
        if self._outstanding:
            self.abandon_running()
        if self._unflushed:
            self._flush()
        return True

    def abandon_running(self) -> None:
        """Return still-running runs to the queue (their attempt counts) and stop waiting."""
        running = self._executor.started()
        self._outstanding = 0
        self.abandoned_tasks = True
        released = self.engine.release(running, now=timezone.now(), started=True)
        self._let_go(running)
        logger.warning("Returned %d unfinished run(s) to the queue", released)

    def emergency_exit(self) -> None:
        """Second signal: give every held run back and leave at once."""
        try:
            waiting = self._executor.take_waiting()
            self.engine.release(waiting, now=timezone.now(), started=False)
            self._outstanding -= len(waiting)
            self._collect_done()
            self._flush()
            if self._outstanding:
                self.abandon_running()
        except Exception:
            logger.exception("Could not return held runs; their leases will expire")
