"""The one way a duty plugs in: a ``Duty`` whose pass says when it wants to run next, and a
``DutyThread`` that runs some duties on a thread and a database connection of their own.

A failing pass is logged and tried again after the duty's regular interval, never the end
of the thread.
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
    """One periodic duty. ``run`` does one pass and returns how long (seconds) until the next;
    ``interval`` is the duty's regular pause, also the pause after a pass that failed."""

    name = "duty"
    interval = 1.0

    def run(self, now: datetime) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def start(self) -> None:
        """Called on the starting thread before the duty's thread starts (nothing by default)."""

    def stop(self) -> None:
        """Asked to stop, from any thread: end a wait inside a pass (nothing by default)."""


class DutyThread:
    """Runs ``duties`` on a daemon thread with its own connection to ``database``."""

    def __init__(
        self, name: str, database: str, duties: list[Duty], join_timeout: float = 5.0
    ) -> None:
        self.database = database
        self.duties = duties
        self.join_timeout = join_timeout
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"taskmill-{name}", daemon=True)

    def start(self) -> None:
        for duty in self.duties:
            duty.start()
        self._thread.start()

    def kick(self) -> None:
        """Run every duty now (a NOTIFY about a stop request, a test)."""
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        for duty in self.duties:
            duty.stop()
        self._kick.set()
        self._thread.join(self.join_timeout)

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
                    delay = self._run_duty(duty)
                    next_at[id(duty)] = time.monotonic() + delay
                wait = min(next_at.values()) - time.monotonic()
                self._kick.wait(max(0.0, wait))
        finally:
            connections[self.database].close()

    def _run_duty(self, duty: Duty) -> float:
        """One pass; the delay until the next (the duty's interval after a failure)."""
        try:
            return duty.run(timezone.now())
        except DatabaseError as exc:
            reset_connection(self.database)
            logger.warning("%s: database error (%s); will retry", duty.name, exc)
        except Exception:
            logger.exception("%s failed; will retry", duty.name)
        return duty.interval
