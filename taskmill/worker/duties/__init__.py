"""A worker's periodic duties, each a small module behind one interface (Oban's plugins).

- ``stager``: marks deferred runs due when their time comes (the worker's own loop runs it,
  since what it finds is work to claim);
- ``heartbeat``: renews the leases of the runs this worker holds, learns of stop and
  shutdown requests (its own thread: nothing may starve it);
- ``lifeline``: rescues the runs of workers that died (their leases ran out);
- ``pruner``: deletes finished runs past their time-to-live, in small batches.

A ``DutyThread`` runs some duties on their own thread and database connection, each at
its interval; a failing duty is logged and retried, never the end of the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from django.db import DatabaseError, connections
from django.utils import timezone

from ...db import reset_connection

logger = logging.getLogger("taskmill.worker")


class Duty:
    """One periodic duty. ``interval`` is in seconds; ``run`` does one pass."""

    name = "duty"
    interval = 1.0

    def run(self, now: datetime) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class DutyThread:
    """Runs ``duties`` on a daemon thread with its own connection to ``database``."""

    def __init__(self, name: str, database: str, duties: list[Duty]) -> None:
        self.database = database
        self.duties = duties
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"taskmill-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """Run every duty now (a NOTIFY about a stop request, a test)."""
        self._kick.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        next_at = {id(duty): 0.0 for duty in self.duties}
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                kicked = self._kick.is_set()
                self._kick.clear()
                for duty in self.duties:
                    if self._stop.is_set():
                        break
                    if not kicked and now < next_at[id(duty)]:
                        continue
                    self._run_duty(duty)
                    next_at[id(duty)] = time.monotonic() + duty.interval
                wait = min(next_at.values()) - time.monotonic()
                self._kick.wait(max(0.0, wait))
        finally:
            connections[self.database].close()

    def _run_duty(self, duty: Duty) -> None:
        try:
            duty.run(timezone.now())
        except DatabaseError as exc:
            reset_connection(self.database)
            logger.warning("%s: database error (%s); will retry", duty.name, exc)
        except Exception:
            logger.exception("%s failed; will retry", duty.name)
