"""Where attempts run: ``concurrency`` task threads, one event loop for async tasks, and
child processes for sync tasks with a timeout (``processes``).

The task threads take claimed runs from a queue themselves, so a task starts the moment a
slot is free, while the worker's own thread is busy claiming or writing outcomes. A slot is
held for the whole attempt, sync or async: at most ``concurrency`` tasks run at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections

from .. import registry
from ..db import ClaimedRun, get_engine
from .attempt import Attempt, Completed, ended_unstarted
from .attempt_log import log_ended_attempt
from .lost import lose_fenced
from .runners import CHILD_HANDLER, run_async, run_sync, where_to_run

logger = logging.getLogger("taskmill.worker")


class Executor:
    def __init__(
        self,
        concurrency: int,
        on_done: Callable[[Completed], None],
        *,
        database: str = "default",
        on_start: Callable[[ClaimedRun], bool | None] | None = None,
        out_of_touch: Callable[[float], bool] = lambda since: False,
    ) -> None:
        self._on_done = on_done
        self._on_start = on_start
        self._out_of_touch = out_of_touch
        self._database = database
        # Sync tasks with a timeout run in child processes, started on first need.
        self._pool = None
        self._concurrency = concurrency
        # One stop flag per started run: a stop request sets it (and cancels async ones).
        self._stops: dict[int, threading.Event] = {}
        self._futures: dict[int, Any] = {}
        self._task_connections: dict[int, Any] = {}
        # Prefetch marks (see begin_marks): claimed runs not started yet, those a heartbeat
        # is marking as such in the database, and those it has marked.
        self._queued: dict[int, ClaimedRun] = {}  # claimed, not taken by a thread yet
        self._marking: set[int] = set()
        self._marked: set[int] = set()
        self._round_done = threading.Event()
        self._round_done.set()
        # (id, attempt) of queued runs ended by drop(): the thread that takes one skips it.
        self._skip: set[tuple[int, int]] = set()
        # Attempts (run id, attempt) a self-fence stopped, or taken while it is up: lost.
        self._fenced: set[tuple[int, int]] = set()
        self._fencing = False
        self._slots = threading.Semaphore(concurrency)
        self._waiting: queue.SimpleQueue[ClaimedRun | None] = queue.SimpleQueue()
        self._started: dict[int, ClaimedRun] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads = [
            threading.Thread(target=self._serve, name=f"taskmill-task-{n}", daemon=True)
            for n in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    # -- the worker's side ------------------------------------------------------------------

    def submit(self, runs: Iterable[ClaimedRun]) -> None:
        runs, now = list(runs), time.monotonic()
        for run in runs:
            run.queued_at = now  # a silence of the heartbeat after this: ask before starting
        with self._lock:
            self._queued.update((run.id, run) for run in runs)
        for run in runs:
            self._waiting.put(run)

    # -- prefetch marks: exact "was it started?" for the rescue, at no per-task cost --------

    def begin_marks(self) -> set[int]:
        """A heartbeat is about to mark the runs not started yet; return them. A run that
        starts before the heartbeat's write is done waits for it, then unmarks itself."""
        with self._lock:
            self._marking = set(self._queued)
            self._round_done.clear()
            return set(self._marking)

    def end_marks(self, written: set[int]) -> None:
        with self._lock:
            self._marked |= written
            self._marking = set()
            self._round_done.set()

    def _needs_unmark(self, run: ClaimedRun) -> bool:
        with self._lock:
            pending = run.id in self._marking
            marked = run.id in self._marked
            self._marked.discard(run.id)
        if pending:
            # Wait for the heartbeat's write however long it takes (SQLite may keep it waiting
            # for its lock): starting before it lands would let its mark fall after our
            # unmark, and a rescue would take the started run for one never started.
            while not self._round_done.wait(30):
                logger.warning("Run %s waits for a heartbeat's write to start", run.id)
            with self._lock:
                self._marked.discard(run.id)
        return pending or marked

    def drop(self, held: dict[int, int]) -> None:
        """Queued runs (id -> attempt) lost, or asked to stop, before they started: end them
        now, unstarted (a thread may be busy for long), and never run them. Only attempts
        still queued here count: a run written back meanwhile, or claimed again under a new
        attempt, is left alone."""
        with self._lock:
            ended = [
                self._queued.pop(run_id)
                for run_id, attempt in held.items()
                if (run := self._queued.get(run_id)) is not None and run.attempt == attempt
            ]
            self._skip.update((run.id, run.attempt) for run in ended)
        for run in ended:
            self._on_done(ended_unstarted(run, self._database))

    def _take_queued(self, run: ClaimedRun) -> bool:
        """Take ``run`` off the queued runs; False if drop() ended it already. Call with the
        lock held."""
        key = (run.id, run.attempt)
        if key in self._skip:
            self._skip.discard(key)
            return False
        if self._queued.get(run.id) is run:
            del self._queued[run.id]
        return True

    def stop_started(self, held: dict[int, int]) -> None:
        """Stop the started runs among ``held`` (id -> attempt), if still that attempt."""
        with self._lock:
            started = [
                run_id
                for run_id, attempt in held.items()
                if (run := self._started.get(run_id)) is not None and run.attempt == attempt
            ]
        for run_id in started:
            self.request_stop(run_id)

    def waiting_count(self) -> int:
        return self._waiting.qsize()

    def take_waiting(self) -> list[ClaimedRun]:
        """Remove and return the runs no thread has started yet."""
        taken = []
        while True:
            try:
                run = self._waiting.get_nowait()
            except queue.Empty:
                return taken
            if run is None:
                continue
            with self._lock:
                if not self._take_queued(run):
                    continue
            taken.append(run)

    def started(self) -> list[ClaimedRun]:
        with self._lock:
            return list(self._started.values())

    def atomic_ids(self) -> set[int]:
        """Started runs of atomic tasks: their rows are locked by their own transaction."""
        with self._lock:
            started = list(self._started.values())
        return {
            run.id
            for run in started
            if getattr(registry.resolve_or_none(run.task_path), "atomic", False)
        }

    def request_stop(self, run_id: int) -> bool:
        """Ask a started run to stop: its flag is set, an async one is cancelled, a child
        process is killed (by the pool, which watches the flag), and on PostgreSQL the
        query its thread is running is cancelled. False if the run is not running here."""
        with self._lock:
            event = self._stops.get(run_id)
            future = self._futures.get(run_id)
            wrapper = self._task_connections.get(run_id)
        if event is None:
            return False
        event.set()
        if future is not None:
            future.cancel()
        if wrapper is not None:  # on PostgreSQL, the query its thread is running
            get_engine(wrapper.alias).cancel_query(wrapper)
        return True

    def fence(self) -> None:
        """Self-fencing: stop every started run and kill every child process now (their runs
        may be rescued elsewhere). Not the task's doing: unless one succeeds anyway, each
        attempt is written as lost (``lose_fenced``), never as a failure or a cancel."""
        with self._lock:
            self._fencing = True
            started = list(self._started.values())
            self._fenced.update((run.id, run.attempt) for run in started)
        for run in started:
            self.request_stop(run.id)
        if self._pool is not None:
            self._pool.kill_all()

    def unfence(self) -> None:
        with self._lock:
            self._fencing = False

    def shutdown(self) -> None:
        """Let the threads end once idle; running tasks are not interrupted."""
        for _ in self._threads:
            self._waiting.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._pool is not None:
            self._pool.shutdown()

    def _process_pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                from ..conf import setting
                from .processes import ProcessPool

                self._pool = ProcessPool(
                    CHILD_HANDLER,
                    max_children=self._concurrency,
                    grace=float(setting("TASKMILL_TIMEOUT_GRACE")),
                )
            return self._pool

    # -- the task threads -------------------------------------------------------------------

    def _serve(self) -> None:
        # This thread's connection wrapper (Django's are per thread): the one a stop's query
        # cancel targets. The same object all along; close_old_connections only closes it.
        own_connection = connections[self._database]
        while True:
            self._slots.acquire()
            run = self._waiting.get()
            if run is None:
                self._slots.release()
                return
            stop = threading.Event()
            with self._lock:
                # Taken here or ended by drop(), never both: both decide under this lock.
                taken = self._take_queued(run)
                if taken:
                    self._started[run.id] = run
                    self._stops[run.id] = stop
                    if self._fencing:  # kill_all() may kill its child: not a cancel
                        self._fenced.add((run.id, run.attempt))
            if not taken:
                self._slots.release()
                continue
            unmark = self._needs_unmark(run)
            # A run marked "not started" starts only once that is recorded: not if it was
            # taken away meanwhile (rescued as never started while this worker was frozen),
            # or lost or asked to stop while the database was away. So does any run queued
            # before the heartbeat fell silent (a freeze, the database away), even if it is
            # back now: it may have been rescued and claimed again before a heartbeat could
            # mark it, even under the same attempt number.
            if (unmark or self._out_of_touch(run.queued_at)) and not self._record_start(run, stop):
                self._done(ended_unstarted(run, self._database))
                continue
            where = where_to_run(run)
            if where == "async":
                # The coroutine keeps the slot; this thread goes back for more work.
                attempt = Attempt(run, database=self._database, stop_event=stop)
                future = asyncio.run_coroutine_threadsafe(
                    self._run_async(attempt), self._event_loop()
                )
                with self._lock:
                    self._futures[run.id] = future
                if stop.is_set():
                    future.cancel()
                continue
            pool = self._process_pool() if where == "child" else None
            attempt = Attempt(run, database=self._database, stop_event=stop)
            if pool is None:
                with self._lock:
                    self._task_connections[run.id] = own_connection
            try:
                completed = run_sync(attempt, pool)
            except BaseException as exc:
                completed = attempt.failed(exc, 0.0)
            self._done(completed)

    def _record_start(self, run: ClaimedRun, stop: threading.Event) -> bool:
        """Record that a run marked "not started" starts; False if it must not start.

        Never start it unrecorded: while the mark stays, a rescue (the database away longer
        than the lease, say) would take the started run for one never started and run it
        again with no lost attempt on record. So wait for the database, unless the run is
        lost or asked to stop meanwhile (then it ends unstarted).
        """
        if self._on_start is None:
            return True
        delay = 0.1
        while (recorded := self._on_start(run)) is None:
            if stop.wait(delay):
                return False
            delay = min(delay * 2, 2.0)
        return recorded

    async def _run_async(self, attempt: Attempt) -> None:
        try:
            completed = await run_async(attempt)
        except BaseException as exc:
            completed = attempt.failed(exc, 0.0)
        self._done(completed)

    def _done(self, completed: Completed) -> None:
        run_id = completed.run.id
        with self._lock:
            fenced = (run_id, completed.run.attempt) in self._fenced
            self._fenced.discard((run_id, completed.run.attempt))
        if fenced:
            lose_fenced(completed)
        with self._lock:
            # Only this attempt's entries: the run may already be running here again under
            # a newer attempt (claimed back after it was taken away from this one).
            if self._started.get(run_id) is completed.run:
                del self._started[run_id]
                self._stops.pop(run_id, None)
                self._futures.pop(run_id, None)
                self._task_connections.pop(run_id, None)
        self._slots.release()
        log_ended_attempt(completed)
        self._on_done(completed)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="taskmill-async", daemon=True
                ).start()
            return self._loop
