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

from ..db import reset_connection

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
        self._release_unstarted()
        if self._outstanding and time.monotonic() < (self._stop_deadline or 0):
            return False
        self._end_what_runs()
        return True

    def _end_what_runs(self) -> None:
        """Write the outcomes collected so far, and give back what still runs."""
        self._collect_done()
        if self._outstanding:
            self.abandon_running()
        if self._unflushed:
            self._flush()

    def _release_unstarted(self) -> None:
        """Give back the runs no thread has started. Kept until written: a release the
        database fails (a deadlock, a broken connection) is tried again, by the next turn of
        a graceful stop or by an emergency exit."""
        self._to_release += self._executor.take_waiting()
        waiting = self._to_release
        if waiting:
            released = self.engine.release(waiting, now=timezone.now(), started=False)
            self._to_release = []
            self._outstanding -= len(waiting)
            self._let_go(waiting)
            logger.info("Returned %d unstarted run(s) to the queue", released)

    def abandon_running(self) -> None:
        """Return still-running runs to the queue (their attempt counts) and stop waiting."""
        running = self._executor.started()
        released = self.engine.release(running, now=timezone.now(), started=True)
        # Only once written: a release that fails is tried again by the caller.
        self._outstanding = 0
        self.abandoned_tasks = True
        self._let_go(running)
        logger.warning("Returned %d unfinished run(s) to the queue", released)

    def emergency_exit(self) -> None:
        """Second signal: give every held run back and leave at once.

        The signal raises wherever the worker's thread is, possibly in the middle of a
        statement, leaving the connection out of step with the server: a failed try is made
        once more on a fresh connection (the server rolls back what the old one left open).
        """
        for last_try in (False, True):
            try:
                self._release_unstarted()
                self._end_what_runs()
                return
            except Exception as exc:
                if last_try:
                    logger.exception("Could not return held runs; their leases will expire")
                    return
                logger.warning("Could not return held runs (%s); trying a new connection", exc)
                reset_connection(self.options.database)
