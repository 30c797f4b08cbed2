"""The worker: claim runs in batches, hand them to the executor, write outcomes in batches.

One thread (the caller's) owns the database conversation: claims, finishes, releases and
the ``task_finished`` signal. Tasks run on the executor's threads or event loop, which take
claimed runs from a queue and report outcomes back, so tasks keep running while this thread
talks to the database, and it wakes only when there is a batch to write or to claim.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError
from django.utils import timezone

from .. import registry, wakeup
from ..conf import setting
from ..control import CONTROL_WAKEUP
from ..db import ClaimedRun, get_engine, reset_connection
from .attempt import Completed
from .duties import DutyThread
from .duties.heartbeat import Heartbeat, StartRecorder
from .duties.lifeline import Lifeline
from .duties.pruner import Pruner
from .duties.stager import Stager
from .executor import Executor
from .flushing import FLUSH_BATCH, FLUSH_DELAY, OutcomeFlushing
from .stopping import GracefulStop

logger = logging.getLogger("taskmill.worker")

# A worker holds no more waiting runs than it expects to start within this window, or
# within a few claims' time when claims take longer (see Prefetch).
PREFETCH_WINDOW = 0.05
CLAIMS_COVERED = 4
MAX_PREFETCH = 200
FIRST_IDLE_POLL = 0.05
# How often a worker looks for deferred runs that have come due (or each poll, if sooner).
STAGE_EVERY = 1.0
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


def make_worker_id(label: str) -> str:
    host = socket.gethostname()
    suffix = f"{host}:{os.getpid()}:{secrets.token_hex(3)}"
    return (f"{label}@{suffix}" if label else suffix)[:128]


class Prefetch:
    """How many claimed-but-waiting runs to hold: enough to keep slots busy, no more.

    The window is measured in time: with 1 ms tasks a worker holds about 50 per slot, with
    1 s tasks none beyond its free slots, so slow tasks never strand quick ones.

    The window also covers a few claims: the worker claims again when half the backlog is
    left, and the slots must not run dry before that claim commits. A claim is usually a
    millisecond or two, but CPU-bound tasks make it far slower: the worker's thread gets the
    interpreter lock back after each of the claim's round trips only when the task's thread
    lets go of it (every 5 ms, Python's switch interval). Measured with 10 ms CPU-bound tasks
    (bench/processes.py), a 50 ms window left the task thread waiting for runs a third of the
    time.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.average: float | None = None  # moving average of task durations, seconds
        self.claim_time = 0.0  # moving average of a claim's wall time, its write included

    def observe(self, duration: float) -> None:
        self.average = duration if self.average is None else 0.9 * self.average + 0.1 * duration

    def observe_claim(self, seconds: float) -> None:
        self.claim_time = 0.8 * self.claim_time + 0.2 * seconds

    def backlog(self) -> int:
        if self.average is None:
            return self.concurrency
        window = max(PREFETCH_WINDOW, CLAIMS_COVERED * self.claim_time)
        per_slot = window / max(self.average, 1e-6)
        return min(int(per_slot * self.concurrency), MAX_PREFETCH)


class WorkerInterrupted(BaseException):
    """Raised in the worker's thread by a second stop signal: leave now."""


class Worker(OutcomeFlushing, GracefulStop):
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.id = make_worker_id(options.label)
        self.engine = get_engine(options.database)
        self.processed = 0
        self._claimed_total = 0
        self._outstanding = 0  # claimed and not yet reported back by the executor
        self._done: deque[Completed] = deque()  # filled by the executor's threads
        self._unflushed: list[Completed] = []
        self._oldest_unflushed = 0.0
        self._wake = threading.Event()
        self._maybe_ready = True  # something may be ready: claim before sleeping
        self._low_water = 0  # wake to claim when fewer runs than this wait
        self._next_stage = 0.0  # when to look for deferred runs that have come due
        self._stopping = False
        self._stop_deadline: float | None = None
        self._prefetch = Prefetch(options.concurrency)
        self._claim_ran = False  # a claim statement ran this turn: time it for Prefetch
        self._record_start = StartRecorder(self)
        self._executor = Executor(
            options.concurrency,
            self._on_done,
            database=options.database,
            on_start=self._record_start,
        )
        self.abandoned_tasks = False
        if options.lease_seconds is None:
            options.lease_seconds = float(setting("TASKMILL_LEASE"))
        # Runs held (claimed, not yet written back), id -> attempt: what the heartbeat renews.
        self._held: dict[int, int] = {}
        self._held_lock = threading.Lock()
        self._fenced = False
        self._to_release: list[ClaimedRun] = []  # unstarted runs to give back on stopping
        self._claim_in_doubt = False  # a claim failed: it may have claimed runs all the same
        self._finish_in_doubt: set[tuple[int, int]] = set()  # (run, attempt) of failed writes
        self._stager = Stager(self.engine, min(STAGE_EVERY, options.poll_interval), self._staged)
        self.heartbeat = Heartbeat(self)
        self._heartbeat_thread = DutyThread("heartbeat", options.database, [self.heartbeat])
        self._duty_thread = DutyThread(
            "duties",
            options.database,
            [Lifeline(options.database, on_rescued=self._rescued), Pruner(options.database)],
        )

    # -- what the heartbeat thread asks and tells --------------------------------------------

    def held_runs(self) -> tuple[dict[int, int], set[int], set[int]]:
        """For a heartbeat: id -> attempt of every run held, the ids of those not started,
        and those of atomic tasks running (their rows are locked by their transaction)."""
        atomic = self._executor.atomic_ids()
        with self._held_lock:
            held = dict(self._held)
        # Last: from here on, the heartbeat must end its round (marks_written) whatever happens.
        return held, self._executor.begin_marks(), atomic

    def marks_written(self, written: set[int]) -> None:
        self._executor.end_marks(written)

    def stop_runs(self, run_ids: set[int], snapshot: dict[int, int], reason: str) -> None:
        """Stop these runs' attempts (lost to us, or asked to stop), each only if this worker
        still holds it under the attempt the heartbeat saw in ``snapshot``: a run written
        back meanwhile, or claimed again since, is not the one that was lost."""
        with self._held_lock:
            held = {
                run_id: snapshot[run_id]
                for run_id in run_ids
                if run_id in snapshot and self._held.get(run_id) == snapshot[run_id]
            }
        for run_id, attempt in held.items():
            logger.warning("Stopping run %s attempt %s: %s", run_id, attempt, reason)
        if held:
            self._executor.drop(held)
            self._executor.stop_started(held)

    def fence(self) -> None:
        self._fenced = True
        self._executor.fence()

    def unfence(self) -> None:
        self._fenced = False
        self._wake.set()

    def _staged(self) -> None:
        self._maybe_ready = True

    def _rescued(self) -> None:
        self._maybe_ready = True
        self._wake.set()

    def _hold(self, runs: list[ClaimedRun]) -> None:
        with self._held_lock:
            self._held.update((run.id, run.attempt) for run in runs)

    def _let_go(self, runs: Iterable[ClaimedRun]) -> None:
        """Forget these attempts; a run held again under a newer attempt stays held."""
        with self._held_lock:
            for run in runs:
                if self._held.get(run.id) == run.attempt:
                    del self._held[run.id]

    # -- wake-ups and stop requests (any thread, or a signal handler) ----------------------

    def _on_done(self, completed: Completed) -> None:
        self._done.append(completed)
        # Wake the worker's thread only when there is something for it to do: a batch to
        # write, runs to claim, or nothing left running.
        if (
            len(self._done) >= FLUSH_BATCH
            or self._executor.waiting_count() <= self._low_water
            or len(self._done) >= self._outstanding
        ):
            self._wake.set()

    def _on_wakeup(self, queue_name: str) -> None:
        if queue_name == CONTROL_WAKEUP:
            self._heartbeat_thread.kick()  # a stop or shutdown request: learn it now
            return
        if queue_name and not self._serves(queue_name):
            return
        self._maybe_ready = True
        self._wake.set()

    def _serves(self, queue_name: str) -> bool:
        if queue_name in self.options.exclude_queues:
            return False
        return self.options.queues is None or queue_name in self.options.queues

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped (or, with burst/max_tasks, until done); return an exit code."""
        registry.autodiscover()
        # A burst worker exits when the queue is empty: it has nothing to be woken for.
        listens = self.engine.pushes_wakeups and not self.options.burst
        listener = self.engine.start_listener(self._on_wakeup) if listens else None
        wakeup.subscribe(self._on_wakeup)
        logger.info(
            "Worker %s started: database=%s backends=%s queues=%s concurrency=%d",
            self.id,
            self.options.database,
            ",".join(self.options.backends) if self.options.backends is not None else "*",
            ",".join(self.options.queues) if self.options.queues else "*",
            self.options.concurrency,
        )
        if self.options.duties:
            self._heartbeat_thread.start()
            self._duty_thread.start()
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
            if self.options.duties:
                self._duty_thread.stop()
                self._heartbeat_thread.stop()
                self.heartbeat.unregister()
                self._record_start.close()
            self._executor.shutdown()
        logger.info("Worker %s stopped after %d task(s)", self.id, self.processed)
        return 0

    def _loop(self) -> None:
        idle_poll = min(FIRST_IDLE_POLL, self.options.poll_interval)
        next_poll = 0.0
        failures = 0
        while True:
            self._wake.clear()
            if self.options.duties:
                # Also here: a heartbeat stuck in a hung statement never reports a failure.
                self.heartbeat.check_fence()
            self._collect_done()
            try:
                now = time.monotonic()
                claiming = not self._stopping and (self._maybe_ready or now >= next_poll)
                claimed = None
                # The next claim rides along in the outcomes' transaction: one commit. So a
                # claim due now takes the outcomes collected so far with it, early.
                if self._should_flush() or (
                    claiming and self._unflushed and self._claim_limit() > 0
                ):
                    claimed = self._flush(claim=claiming)
                if self._stopping:
                    if self._finish_stopping():
                        return
                else:
                    if claimed is None and claiming:
                        claimed = self._claim()
                    if self._claim_ran:
                        # From this turn's start: the outcomes written with it delay it too.
                        self._prefetch.observe_claim(time.monotonic() - now)
                        self._claim_ran = False
                    if claimed:
                        idle_poll = min(FIRST_IDLE_POLL, self.options.poll_interval)
                    elif claimed is not None and not self._outstanding:
                        # Empty: sleep until woken, backing off while nothing comes.
                        next_poll = now + idle_poll
                        idle_poll = min(idle_poll * 2, self.options.poll_interval)
                    # Deferred runs come due on the clock, whatever the poll back-off. After
                    # the claim: a run a wake-up announced does not wait for this statement
                    # (and its commit); staged runs are claimed on the next turn.
                    self._stage_if_due(now)
                    if self._done_for_good():
                        self._flush()
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
        if self._done and not self._outstanding - len(self._done):
            return 0.0  # everything came back: write it now
        deadlines = [next_poll] if next_poll else [now + self.options.poll_interval]
        if self._unflushed or self._done:
            deadlines.append(self._oldest_unflushed + FLUSH_DELAY if self._unflushed else now)
        if self._stopping:
            deadlines.append(self._stop_deadline or now)
        elif self._maybe_ready and self._claim_limit() > 0:
            return 0.0
        else:
            deadlines.append(self._next_stage)
        return max(0.0, min(deadlines) - now)

    def _stage_if_due(self, now: float) -> None:
        """Make deferred runs whose time has come claimable (at most once per interval)."""
        if now < self._next_stage:
            return
        self._next_stage = now + self._stager.interval
        self._stager.run(timezone.now())

    def _claim_limit(self) -> int:
        options = self.options
        backlog = self._prefetch.backlog()
        self._low_water = backlog // 2
        if self._executor.waiting_count() > self._low_water:
            return 0  # enough waiting already; claim again when it runs low
        limit = options.concurrency + backlog - self._outstanding
        if options.max_tasks is not None:
            limit = min(limit, options.max_tasks - self._claimed_total)
        return max(limit, 0)

    def _claim(self) -> int:
        limit = self._claim_limit()
        if limit <= 0 or self._fenced:
            return 0
        self._prepare_claim()
        try:
            runs = self._claim_runs(limit)
        except DatabaseError:
            self._claim_failed()
            raise
        return self._took(runs, limit)

    def _prepare_claim(self) -> None:
        self._maybe_ready = False
        if self._claim_in_doubt:
            self._return_orphans(timezone.now())

    def _claim_runs(self, limit: int) -> list[ClaimedRun]:
        """The claim statement(s), in the caller's transaction if there is one."""
        self._claim_ran = True
        now = timezone.now()
        return self.engine.claim(
            worker_id=self.id,
            limit=limit,
            now=now,
            lease_until=now + timedelta(seconds=self.options.lease_seconds),
            queues=self.options.queues,
            exclude_queues=self.options.exclude_queues,
            backends=self.options.backends,
        )

    def _claim_failed(self) -> None:
        # It may have committed all the same (the reply was lost): look before claiming.
        self._claim_in_doubt = True
        self._maybe_ready = True

    def _took(self, runs: list[ClaimedRun], limit: int) -> int:
        """Hold and start runs a committed claim took; return how many."""
        if len(runs) == limit:
            self._maybe_ready = True  # a full batch: there is probably more
        self._claimed_total += len(runs)
        self._outstanding += len(runs)
        self._hold(runs)
        self._executor.submit(runs)
        return len(runs)

    def _return_orphans(self, now: datetime) -> None:
        """After a claim that failed, give back what it may have claimed all the same."""
        with self._held_lock:
            held = list(self._held)
        returned = self.engine.release_orphans(self.id, held, now=now)
        self._claim_in_doubt = False
        if returned:
            logger.warning(
                "Returned %d run(s) claimed by a claim whose reply was lost to the queue",
                returned,
            )

    def _done_for_good(self) -> bool:
        """Burst and max-tasks workers end once their work is done and written."""
        if self._outstanding or self._done:
            return False
        options = self.options
        if options.max_tasks is not None and self._claimed_total >= options.max_tasks:
            return True
        return options.burst and not self._maybe_ready
