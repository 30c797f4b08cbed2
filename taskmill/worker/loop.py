"""The worker: claim runs in batches, hand them to the executor, write outcomes in batches.

One thread (the caller's) owns the database conversation: claims, finishes, releases and
the ``task_finished`` signal. Tasks run on the executor's threads or event loop, which take
claimed runs from a queue and report outcomes back, so tasks keep running while this thread
talks to the database, and it wakes only when there is a batch to write or to claim.

The worker is made of collaborators that each own their state: the runs it holds
(``held.py``), the claimer (``claimer.py``), the outcome writer (``flushing.py``), the
graceful stop (``stopping.py``) and its duties (``duties/``), which see the worker only
through a narrow port (``heartbeat_port.py``). This module composes them and runs the loop.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import DatabaseError

from .. import registry, wakeup
from ..conf import setting
from ..control import CONTROL_WAKEUP
from ..db import get_engine, reset_connection
from ..limits.gate import holds_slot
from .attempt import Completed
from .claimer import Claimer
from .duties import WorkerDuties
from .duties.heartbeat import StartRecorder
from .executor import Executor
from .flushing import FLUSH_BATCH, FLUSH_DELAY, OutcomeWriter
from .heartbeat_port import HeartbeatPort
from .held import HeldRuns
from .stopping import GracefulStop

logger = logging.getLogger("taskmill.worker")

FIRST_IDLE_POLL = 0.05
RECONNECT_BACKOFF_MAX = 5.0


@dataclass
class WorkerOptions:
    database: str = "default"
    queues: Sequence[str] | None = None  # None: every queue
    exclude_queues: Sequence[str] = ()
    # The TASKS aliases whose runs to take (Django records the alias on every run); None:
    # every alias whose runs are in this database.
    backends: Sequence[str] | None = None
    concurrency: int = 1
    burst: bool = False
    max_tasks: int | None = None
    label: str = ""
    poll_interval: float = 1.0
    shutdown_timeout: float = 30.0
    lease_seconds: float | None = None  # None: TASKMILL_LEASE
    duties: bool = True  # heartbeat, rescue, pruning (off only in protocol tests)
    scheduler: bool = False  # fire due schedules too (the worker command's default)
    # A DATABASES alias to LISTEN through (OPTIONS["LISTEN_DATABASE"]): direct to PostgreSQL
    # when ``database`` goes through a pooler in transaction mode (db/listen_target.py).
    listen_database: str | None = None
    worker_id: str | None = None  # None: make_worker_id(label); the command makes it first


def make_worker_id(label: str) -> str:
    host = socket.gethostname()
    suffix = f"{host}:{os.getpid()}:{secrets.token_hex(3)}"
    return (f"{label}@{suffix}" if label else suffix)[:128]


class WorkerInterrupted(BaseException):
    """Raised in the worker's thread by a second stop signal: leave now."""


class Worker:
    """The loop and the collaborators it drives. Who touches what: the worker's thread
    alone drives the claimer, the writer and the stop; the executor's threads append to the
    writer's ``reported`` and read two of the claimer's counts (``_on_done``); the
    heartbeat's thread goes through its port; ``held`` is shared under its own lock."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.id = options.worker_id or make_worker_id(options.label)
        self.engine = get_engine(options.database)
        if options.lease_seconds is None:
            options.lease_seconds = float(setting("TASKMILL_LEASE"))
        self._wake = threading.Event()
        self.held = HeldRuns()
        self._record_start = StartRecorder(options.database, self.engine)
        self._executor = Executor(
            options.concurrency,
            self._on_done,
            database=options.database,
            on_start=self._record_start,
            out_of_touch=self._out_of_touch,
        )
        self.claimer = Claimer(self.id, options, self.engine, self.held, self._executor)
        self.writer = OutcomeWriter(options.database, self.engine, self.held, self.claimer)
        # The executor's threads report here (the hot path: no lookup through the writer).
        self._reported = self.writer.reported
        self.graceful_stop = GracefulStop(
            self.id,
            options.database,
            options.shutdown_timeout,
            engine=self.engine,
            executor=self._executor,
            held=self.held,
            claimer=self.claimer,
            writer=self.writer,
            wake=self._wake,
        )
        port = HeartbeatPort(
            held=self.held,
            executor=self._executor,
            claimer=self.claimer,
            writer=self.writer,
            graceful_stop=self.graceful_stop,
            wake=self._wake,
        )
        self.duties = WorkerDuties(
            self.id,
            options,
            self.engine,
            port,
            on_staged=self._staged,
            on_rescued=self._rescued,
        )

    @property
    def processed(self) -> int:
        """Outcomes written (those that landed)."""
        return self.writer.processed

    @property
    def abandoned_tasks(self) -> bool:
        """Runs were given back while their tasks still ran (their threads may linger)."""
        return self.graceful_stop.abandoned_tasks

    # -- wake-ups and stop requests (any thread, or a signal handler) ----------------------

    def request_stop(self) -> None:
        """Stop claiming, finish what runs (within the shutdown timeout), then return."""
        self.graceful_stop.request()

    @property
    def stopping(self) -> bool:
        return self.graceful_stop.requested

    def emergency_exit(self) -> None:
        """Second signal: give every held run back and leave at once."""
        self.graceful_stop.emergency_exit()

    def _on_done(self, completed: Completed) -> None:
        reported = self._reported
        reported.append(completed)
        # Wake the worker's thread only when there is something for it to do: a batch to
        # write, runs to claim, a limit's slot to hand on, or nothing left running.
        claimer = self.claimer
        if (
            len(reported) >= FLUSH_BATCH
            or self._executor.waiting_count() <= claimer.low_water
            or len(reported) >= claimer.outstanding
            or holds_slot(completed.run, self.options.database)
        ):
            self._wake.set()

    def _out_of_touch(self, since: float) -> bool:
        """The heartbeat is silent, or was since ``since`` (executor threads ask before
        starting a run queued then)."""
        duties = getattr(self, "duties", None)  # made after the executor
        return duties is not None and duties.beating and duties.heartbeat.out_of_touch(since)

    def _on_wakeup(self, queue_name: str) -> None:
        if queue_name == CONTROL_WAKEUP:
            self.duties.kick_heartbeat()  # a stop or shutdown request: learn it now
            return
        if queue_name and not self._serves(queue_name):
            return
        self.claimer.maybe_ready = True
        self._wake.set()

    def _serves(self, queue_name: str) -> bool:
        if queue_name in self.options.exclude_queues:
            return False
        return self.options.queues is None or queue_name in self.options.queues

    def _staged(self) -> None:
        self.claimer.maybe_ready = True

    def _rescued(self) -> None:
        self.claimer.maybe_ready = True
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or, with burst/max_tasks, until done); return an exit code."""
        registry.autodiscover()
        # A burst worker exits when the queue is empty: it has nothing to be woken for.
        listens = self.engine.pushes_wakeups and not self.options.burst
        listener = (
            self.engine.start_listener(
                self._on_wakeup, listen_database=self.options.listen_database
            )
            if listens
            else None
        )
        wakeup.subscribe(self._on_wakeup)
        logger.info(
            "Worker %s started: database=%s backends=%s queues=%s concurrency=%d",
            self.id,
            self.options.database,
            ",".join(self.options.backends) if self.options.backends is not None else "*",
            ",".join(self.options.queues) if self.options.queues else "*",
            self.options.concurrency,
        )
        self.duties.start()
        try:
            self._loop()
        except WorkerInterrupted:
            logger.warning("Worker %s interrupted: returning held runs and exiting", self.id)
            self.emergency_exit()
            return 1
        finally:
            wakeup.unsubscribe(self._on_wakeup)
            if listener is not None:
                listener.stop()
            self.duties.stop()
            if self.options.duties:
                self._record_start.close()
            self._executor.shutdown()
        logger.info("Worker %s stopped after %d task(s)", self.id, self.processed)
        return 0

    def _loop(self) -> None:
        claimer, writer, stop = self.claimer, self.writer, self.graceful_stop
        # Also here: a heartbeat stuck in a hung statement never reports a failure.
        heartbeat = self.duties.heartbeat if self.options.duties else None
        idle_poll = min(FIRST_IDLE_POLL, self.options.poll_interval)
        next_poll = 0.0
        failures = 0
        while True:
            self._wake.clear()
            if heartbeat is not None:
                heartbeat.check_fence()
            writer.collect()
            try:
                now = time.monotonic()
                claiming = not stop.requested and (claimer.maybe_ready or now >= next_poll)
                claimed = None
                # The next claim rides along in the outcomes' transaction: one commit. So a
                # claim due now takes the outcomes collected so far with it, early.
                if writer.due(stop.requested) or (
                    claiming and writer.unflushed and claimer.limit() > 0
                ):
                    claimed = writer.flush(claim=claiming)
                if stop.requested:
                    if stop.turn():
                        return
                else:
                    if claimed is None and claiming:
                        claimed = claimer.claim()
                    claimer.time_turn(now)
                    if claimed:
                        idle_poll = min(FIRST_IDLE_POLL, self.options.poll_interval)
                    elif claimed is not None and not claimer.outstanding:
                        # Empty: sleep until woken, backing off while nothing comes.
                        next_poll = now + idle_poll
                        idle_poll = min(idle_poll * 2, self.options.poll_interval)
                    # Deferred runs come due on the clock, whatever the poll back-off. After
                    # the claim: a run a wake-up announced does not wait for this statement
                    # (and its commit); staged runs are claimed on the next turn.
                    self.duties.stage_if_due(now)
                    self.duties.release_if_due(now)
                    if self._done_for_good():
                        writer.flush()
                        return
                failures = 0
            except DatabaseError as exc:
                failures += 1
                reset_connection(self.options.database)
                delay = min(0.1 * 2**failures, RECONNECT_BACKOFF_MAX)
                logger.warning("Database error (%s); retrying in %.1fs", exc, delay)
                self._wake.wait(delay)
                continue
            self._wake.wait(self._sleep_for(next_poll))

    def _sleep_for(self, next_poll: float) -> float:
        now = time.monotonic()
        claimer, writer = self.claimer, self.writer
        reported = len(self._reported)
        if reported and not claimer.outstanding - reported:
            return 0.0  # everything came back: write it now
        deadlines = [next_poll] if next_poll else [now + self.options.poll_interval]
        if writer.unflushed or reported:
            deadlines.append(writer.oldest + FLUSH_DELAY if writer.unflushed else now)
        if self.graceful_stop.requested:
            deadlines.append(self.graceful_stop.deadline or now)
        elif claimer.maybe_ready and claimer.limit() > 0:
            return 0.0
        else:
            deadlines += [self.duties.next_stage, self.duties.next_release]
        return max(0.0, min(deadlines) - now)

    def _done_for_good(self) -> bool:
        """Burst and max-tasks workers end once their work is done and written."""
        claimer = self.claimer
        if claimer.outstanding or self._reported:
            return False
        options = self.options
        if options.max_tasks is not None and claimer.claimed_total >= options.max_tasks:
            return True
        return options.burst and not claimer.maybe_ready and not claimer.any_left()
