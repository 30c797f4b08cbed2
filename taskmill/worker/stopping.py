"""The graceful stop: stop claiming, give back unstarted runs, let running tasks finish
within the shutdown timeout, then return what still runs to the queue; and the emergency
exit of a second signal.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from django.utils import timezone

from ..db import reset_connection
from ..limits.gate import free_slots

if TYPE_CHECKING:
    from ..db import ClaimedRun, Engine
    from .claimer import Claimer
    from .executor import Executor
    from .flushing import OutcomeWriter
    from .held import HeldRuns

logger = logging.getLogger("taskmill.worker")


class GracefulStop:
    """A worker's stop: asked for from any thread (or a signal handler), carried out by the
    worker's thread, turn by turn, until nothing it claimed is left."""

    def __init__(
        self,
        worker_id: str,
        database: str,
        timeout: float,
        *,
        engine: Engine,
        executor: Executor,
        held: HeldRuns,
        claimer: Claimer,
        writer: OutcomeWriter,
        wake: threading.Event,
    ) -> None:
        self.worker_id = worker_id
        self.database = database
        self.timeout = timeout
        self.engine = engine
        self.executor = executor
        self.held = held
        self.claimer = claimer
        self.writer = writer
        self.wake = wake
        self.requested = False
        self.deadline: float | None = None  # monotonic: running tasks are given back then
        self.abandoned_tasks = False  # runs were given back while their tasks still ran
        # Unstarted runs taken from the executor, to give back; kept until the release is
        # written (a deadlock, a broken connection: the next turn, or an emergency exit,
        # tries again).
        self.unreleased: list[ClaimedRun] = []

    def request(self) -> None:
        """Stop claiming, finish what runs (within the shutdown timeout), then return."""
        if not self.requested:
            logger.info(
                "Worker %s stopping: finishing %d running task(s)",
                self.worker_id,
                len(self.executor.started()),
            )
            self.requested = True
            self.deadline = time.monotonic() + self.timeout
        self.wake.set()

    def turn(self) -> bool:
        """One turn of the loop while stopping: give back unstarted runs, wait for running
        ones; True when done."""
        self.claimer.settle_doubt()
        self.release_unstarted()
        if self.claimer.outstanding and time.monotonic() < (self.deadline or 0):
            return False
        self.end_what_runs()
        return True

    def end_what_runs(self) -> None:
        """Write the outcomes collected so far, and give back what still runs."""
        self.writer.collect()
        if self.claimer.outstanding:
            self.abandon_running()
        if self.writer.unflushed:
            self.writer.flush()

    def release_unstarted(self) -> None:
        """Give back the runs no thread has started."""
        self.unreleased += self.executor.take_waiting()
        waiting = self.unreleased
        if waiting:
            released = self.engine.release(waiting, now=timezone.now(), started=False)
            free_slots(self.engine.alias, waiting)
            self.unreleased = []
            self.claimer.came_back(len(waiting))
            self.held.let_go(waiting)
            logger.info("Returned %d unstarted run(s) to the queue", released)

    def abandon_running(self) -> None:
        """Return still-running runs to the queue (their attempt counts) and stop waiting."""
        running = self.executor.started()
        released = self.engine.release(running, now=timezone.now(), started=True)
        free_slots(self.engine.alias, running)
        # Only once written: a release that fails is tried again by the caller.
        self.claimer.none_out()
        self.abandoned_tasks = True
        self.held.let_go(running)
        logger.warning("Returned %d unfinished run(s) to the queue", released)

    def emergency_exit(self) -> None:
        """Second signal: give every held run back and leave at once.

        The signal raises wherever the worker's thread is, possibly in the middle of a
        statement, leaving the connection out of step with the server: a failed try is made
        once more on a fresh connection (the server rolls back what the old one left open).
        """
        for last_try in (False, True):
            try:
                self.release_unstarted()
                self.end_what_runs()
                return
            except Exception as exc:
                if last_try:
                    logger.exception("Could not return held runs; their leases will expire")
                    return
                logger.warning("Could not return held runs (%s); trying a new connection", exc)
                reset_connection(self.database)
