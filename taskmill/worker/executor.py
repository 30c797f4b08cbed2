"""Where attempts run: ``concurrency`` task threads, and one event loop for async tasks.

The task threads take claimed runs from a queue themselves, so a task starts the moment a
slot is free, while the worker's own thread is busy claiming or writing outcomes. A slot is
held for the whole attempt, sync or async: at most ``concurrency`` tasks run at once.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections.abc import Callable, Iterable

from .. import registry
from ..db import ClaimedRun
from ..exceptions import TaskNotRegistered
from .execution import Attempt, Completed


def is_async_run(run: ClaimedRun) -> bool:
    try:
        return inspect.iscoroutinefunction(registry.resolve(run.task_path).func)
    except TaskNotRegistered:
        return False  # refused in Attempt.prepare, on a thread like any sync run


class Executor:
    def __init__(self, concurrency: int, on_done: Callable[[Completed], None]) -> None:
        self._on_done = on_done
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
        for run in runs:
            self._waiting.put(run)

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
            if run is not None:
                taken.append(run)

    def started(self) -> list[ClaimedRun]:
        with self._lock:
            return list(self._started.values())

    def shutdown(self) -> None:
        """Let the threads end once idle; running tasks are not interrupted."""
        for _ in self._threads:
            self._waiting.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- the task threads -------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            self._slots.acquire()
            run = self._waiting.get()
            if run is None:
                self._slots.release()
                return
            with self._lock:
                self._started[run.id] = run
            if is_async_run(run):
                # The coroutine keeps the slot; this thread goes back for more work.
                asyncio.run_coroutine_threadsafe(self._run_async(run), self._event_loop())
                continue
            try:
                completed = Attempt(run).run_sync()
            except BaseException as exc:
                completed = Attempt(run).failed(exc, 0.0)
            self._done(completed)

    async def _run_async(self, run: ClaimedRun) -> None:
        try:
            completed = await Attempt(run).run_async()
        except BaseException as exc:
            completed = Attempt(run).failed(exc, 0.0)
        self._done(completed)

    def _done(self, completed: Completed) -> None:
        with self._lock:
            self._started.pop(completed.run.id, None)
        self._slots.release()
        self._on_done(completed)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="taskmill-async", daemon=True
                ).start()
            return self._loop
