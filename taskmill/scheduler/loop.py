"""The scheduler loop: tick, then sleep until the next schedule is due.

It runs alone (``manage.py taskmill scheduler``) or as a thread inside each worker. Any
number may run at once: the fire transaction makes each fire happen once, whoever wins.
It never busy-loops: after a tick that left nothing due, it sleeps until the earliest next
fire time, at most ``max_sleep`` seconds (so schedules created or edited elsewhere are seen
within that), and it survives database errors by reconnecting with a growing back-off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, connections
from django.utils import timezone

from ..db import reset_connection
from . import firing

logger = logging.getLogger("taskmill.scheduler")

RECONNECT_BACKOFF_MAX = 5.0


@dataclass
class SchedulerOptions:
    database: str = "default"
    max_sleep: float = 1.0
    batch_size: int = firing.BATCH_SIZE


class Scheduler:
    def __init__(self, options: SchedulerOptions, sync_declared: bool = False) -> None:
        self.options = options
        self.fired = 0
        self._stop = threading.Event()
        # Declarations still to write (a sync at start failed on the database): each pass
        # tries again before firing, so schedules declared in code are not left out.
        self._sync_pending = sync_declared

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        logger.info("Scheduler started: database=%s", self.options.database)
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    delay = self.run_once()
                    failures = 0
                except DatabaseError as exc:
                    failures += 1
                    reset_connection(self.options.database)
                    delay = min(0.1 * 2**failures, RECONNECT_BACKOFF_MAX)
                    logger.warning("Scheduler database error (%s); retrying in %.1fs", exc, delay)
                except Exception:
                    # A bug or a misbehaving signal receiver: the tick rolled back; a
                    # scheduler thread that died silently would stop every schedule.
                    failures += 1
                    delay = min(0.1 * 2**failures, RECONNECT_BACKOFF_MAX)
                    logger.exception("Scheduler error; retrying in %.1fs", delay)
                self._stop.wait(delay)
        finally:
            # This thread's connection: a worker's scheduler thread must not leak it.
            connections[self.options.database].close()
        logger.info("Scheduler stopped after %d run(s) enqueued", self.fired)

    def run_once(self) -> float:
        """Fire what is due; return how long to sleep before the next pass."""
        options = self.options
        if self._sync_pending:
            self._sync()
        while not self._stop.is_set():
            result = firing.tick(options.database, batch_size=options.batch_size)
            self.fired += result.runs
            if result.runs:
                logger.debug("Enqueued %d scheduled run(s)", result.runs)
            if result.schedules < options.batch_size:
                break  # a full batch means more may be due right now
        now = timezone.now()
        upcoming = firing.next_due_at(options.database, now)
        if upcoming is None:
            return options.max_sleep
        return min(max((upcoming - now).total_seconds(), 0.0), options.max_sleep)

    def _sync(self) -> None:
        """Write the code's declarations; a database error is raised (the loop retries)."""
        from .declarations import sync_schedules

        try:
            report = sync_schedules(self.options.database)
        except DatabaseError:
            raise
        except Exception:  # an invalid declaration: trying again would not help
            logger.exception("Could not sync the schedules declared in code")
        else:
            logger.info("Schedules declared in code synced: %s", report)
        self._sync_pending = False


def start_thread(
    options: SchedulerOptions, sync_declared: bool = False
) -> tuple[Scheduler, threading.Thread]:
    """Run a scheduler on a daemon thread (a worker's); stop it with ``request_stop()``."""
    scheduler = Scheduler(options, sync_declared)
    thread = threading.Thread(target=scheduler.run, name="taskmill-scheduler", daemon=True)
    thread.start()
    return scheduler, thread


def start_in_worker(database: str, max_sleep: float = 1.0) -> Callable[[], None]:
    """A worker's scheduler: sync the code's schedules, start the thread; return its stop.

    A failed sync is not fatal: the worker still runs tasks and fires the schedules already
    stored. An invalid declaration is logged; a database error (the database away) is
    retried by the scheduler thread, before its first fire, until it passes.
    """
    from .declarations import autodiscover, sync_schedules

    retry_sync = False
    try:
        autodiscover()
        logger.info("Schedules declared in code synced: %s", sync_schedules(database))
    except DatabaseError as exc:
        # The database went away: the scheduler thread syncs once it is back.
        logger.warning("Schedules declared in code not synced yet (%s); will retry", exc)
        retry_sync = True
    except Exception:
        logger.exception("Could not sync the schedules declared in code")
    finally:
        connections[database].close()  # opened on the worker's thread: leave it clean
    scheduler, thread = start_thread(
        SchedulerOptions(database=database, max_sleep=max_sleep), sync_declared=retry_sync
    )

    def stop() -> None:
        scheduler.request_stop()
        thread.join(timeout=10)

    return stop
