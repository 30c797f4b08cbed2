"""The scheduler loop: tick, then sleep until the next schedule is due.

It runs alone (``manage.py taskmill scheduler``), or pass by pass as a duty of each worker
(taskmill.worker.duties.scheduler). Any number may run at once: the fire transaction makes
each fire happen once, whoever wins. It never busy-loops: after a tick that left nothing
due, it sleeps until the earliest next fire time, at most ``max_sleep`` seconds (so
schedules created or edited elsewhere are seen within that), and it survives database
errors by reconnecting with a growing back-off.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from ..db import get_engine, reset_connection
from . import batch, firing

logger = logging.getLogger("taskmill.scheduler")

RECONNECT_BACKOFF_MAX = 5.0
# A fire time this close (seconds) is prefetched: its schedules read and runs built before it.
PREFETCH_WINDOW = 1.0


@dataclass
class SchedulerOptions:
    database: str = "default"
    max_sleep: float = 1.0
    batch_size: int = firing.BATCH_SIZE
    # How many schedules due at the next fire time are read and prepared before it (0: none).
    prefetch_limit: int = firing.PREFETCH_LIMIT


class Scheduler:
    def __init__(self, options: SchedulerOptions) -> None:
        self.options = options
        self.fired = 0
        self._stop = threading.Event()
        self._failures = 0  # passes failed in a row: the back-off grows with them
        # Declarations still to write (a sync at start failed on the database): each pass
        # tries again before firing, so schedules declared in code are not left out.
        self._sync_pending = False

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        logger.info("Scheduler started: database=%s", self.options.database)
        try:
            while not self._stop.is_set():
                self._stop.wait(self.next_pass())
        finally:
            # This thread's connection: whoever runs the loop on a thread must not leak it.
            connections[self.options.database].close()
        logger.info("Scheduler stopped after %d run(s) enqueued", self.fired)

    def next_pass(self) -> float:
        """One pass (``run_once``) that survives errors; return how long to sleep."""
        try:
            delay = self.run_once()
            self._failures = 0
        except DatabaseError as exc:
            self._failures += 1
            reset_connection(self.options.database)
            delay = min(0.1 * 2**self._failures, RECONNECT_BACKOFF_MAX)
            logger.warning("Scheduler database error (%s); retrying in %.1fs", exc, delay)
        except Exception:
            # A bug or a misbehaving signal receiver: the tick rolled back; a
            # scheduler thread that died silently would stop every schedule.
            self._failures += 1
            delay = min(0.1 * 2**self._failures, RECONNECT_BACKOFF_MAX)
            logger.exception("Scheduler error; retrying in %.1fs", delay)
        return delay

    def run_once(self) -> float:
        """Fire what is due; return how long to sleep before the next pass.

        When the next fire time is within ``max_sleep``, its schedules are read and their
        runs built now (``batch.prefetch``), then the loop waits for that time and only
        writes: a thousand schedules due in the same second are enqueued in one
        transaction a few milliseconds after their time, not a tick per hundred later.
        """
        options = self.options
        if self._sync_pending:
            self._sync()
        self._tick_until_done()
        now = timezone.now()
        upcoming = firing.next_due_at(options.database, now)
        if upcoming is None:
            return options.max_sleep
        wait = (upcoming - now).total_seconds()
        if options.prefetch_limit <= 0:
            return min(max(wait, 0.0), options.max_sleep)
        # Never waits longer than max_sleep: what is created or edited elsewhere meanwhile
        # must still be seen within it.
        window = min(PREFETCH_WINDOW, options.max_sleep)
        if wait > window:
            # Wake a window before it: the next pass has that long to fire it ahead.
            return min(wait - window, options.max_sleep)
        fired = self._fire_ahead(upcoming)
        if fired is None:
            return 0.0  # asked to stop
        self.fired += fired
        if fired:
            logger.debug("Enqueued %d scheduled run(s) due at %s", fired, upcoming.isoformat())
        self._tick_until_done()  # whatever that did not take
        return 0.0

    def _fire_ahead(self, fire_at: datetime) -> int | None:
        """Fire the schedules due at ``fire_at`` (soon) with the work done before it.

        Where rows can be locked (PostgreSQL, MySQL), the whole fire happens ahead in a
        transaction (lock the due rows with SKIP LOCKED, compare-and-set, insert the runs)
        whose commit waits for ``fire_at``: the runs become visible at their time, not a
        batch's work later. SQLite's write transaction would hold every worker back while it
        waits, so there the schedules are only read and the runs built ahead, and written at
        ``fire_at`` (a compare-and-set that fails then leaves them to the regular tick).
        Returns the runs enqueued, None if a stop came first (nothing fired).
        """
        database = self.options.database
        limit = self.options.prefetch_limit
        if get_engine(database).skips_locked_rows:
            with transaction.atomic(using=database):
                prepared = batch.prepare_due(database, fire_at, limit, lock=True)
                fired = batch.fire_prepared(prepared, fire_at, database) if prepared else 0
                if not self._wait_until(fire_at):
                    transaction.set_rollback(True, using=database)
                    return None
        else:
            prepared = batch.prepare_due(database, fire_at, limit, lock=False)
            if not self._wait_until(fire_at):
                return None
            batch.restamp(prepared, timezone.now())
            with transaction.atomic(using=database):
                fired = batch.fire_prepared(prepared, timezone.now(), database) if prepared else 0
        if fired:
            batch.announce(prepared, database)
        return fired or 0

    def _tick_until_done(self) -> None:
        options = self.options
        while not self._stop.is_set():
            result = firing.tick(options.database, batch_size=options.batch_size)
            self.fired += result.runs
            if result.runs:
                logger.debug("Enqueued %d scheduled run(s)", result.runs)
            if result.schedules < options.batch_size:
                break  # a full batch means more may be due right now

    def _wait_until(self, moment: datetime) -> bool:
        """Sleep until the wall clock reaches ``moment``; False if asked to stop meanwhile.

        Never returns early: a run enqueued before its fire time would start too soon."""
        while not self._stop.is_set():
            left = (moment - timezone.now()).total_seconds()
            if left <= 0:
                return True
            self._stop.wait(left)
        return False

    def sync_at_start(self) -> None:
        """Write the schedules declared in code (the project's tasks imported already).

        A database away does not stop the start: the passes sync once it is back, before
        they fire. An invalid declaration raises (ValidationError): the caller decides."""
        from .declarations import sync_schedules

        try:
            report = sync_schedules(self.options.database)
        except DatabaseError as exc:
            logger.warning("Schedules declared in code not synced yet (%s); will retry", exc)
            self._sync_pending = True
        else:
            logger.info("Schedules declared in code synced: %s", report)

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
