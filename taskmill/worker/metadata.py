"""A running attempt's metadata, with the names of Django's proposal (new-features#141):
``context.metadata``, ``save_metadata()`` / ``asave_metadata()``, and taskmill's progress on
top of it, ``set_progress(done, total, message)`` / ``aset_progress(...)``.

``context.metadata`` is one dict, shared with ``context.task_result.metadata``: what the
caller passed with ``.using(metadata=...)`` and what earlier attempts left. A save writes it
to the run's row at once, so ``get_result()`` reads it while the run is still RUNNING.
Progress is stored in it under ``"progress"`` and saved at once too, but at most every
``PROGRESS_INTERVAL`` seconds: a loop that reports each of a million rows writes a few times a
second, not a million times. What a throttled call left unsaved is saved by a later call
once the interval has passed, and in any case with the attempt's outcome (``final``), in
the same statement: the last value always lands.

Every write is fenced like an outcome: it lands only while the row is still RUNNING with
this attempt. An attempt fenced off (its worker froze past its lease, and its run was
rescued and runs again elsewhere) has its write dropped and logged, never raised into the
task: the attempt that now owns the run must not see its metadata overwritten by a stale
one. The fence only moves
forward, so once refused the attempt writes no more.

A write goes through the thread's own connection, as the task's own queries do: inside a
transaction the task opened (an ``atomic=True`` task's included) it lands when that commits.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

from asgiref.sync import sync_to_async

from ..logs import ATTEMPT, RUN_ID
from ..models import Run
from ..progress import PROGRESS_KEY, progress_entry
from ..serialization import to_json_value
from ..status import RunStatus

logger = logging.getLogger("taskmill.worker")

# set_progress() writes at most this often (seconds): four times a second reads as live in
# the control room and costs a long loop four statements a second.
PROGRESS_INTERVAL = 0.25


class MetadataWriter:
    """The writes of one attempt's metadata (``metadata`` is the very dict the context and
    its result hold). Safe to use from several threads of one task: writes take turns."""

    def __init__(
        self, metadata: dict[str, Any], *, run_id: int, attempt: int, database: str
    ) -> None:
        self.metadata = metadata
        self.run_id = run_id
        self.attempt = attempt
        self.database = database
        self._lock = threading.Lock()
        # The JSON text the row holds as far as this attempt knows: the claim's, then the
        # last write's. A save of the same text writes nothing.
        self._claimed = self._written = _text(metadata)
        self._wrote = False
        self._last_write = -math.inf  # monotonic time of the last write (the throttle's)
        self.fenced_off = False

    # -- what the context calls --------------------------------------------------------------

    def save(self) -> None:
        """Write the metadata to the run's row now (fenced by the attempt)."""
        with self._lock:
            self._write_locked()

    async def asave(self) -> None:
        # The check and the write on the thread async tasks run their ORM calls on.
        await sync_to_async(self.save)()

    def set_progress(self, done: float, total: float, message: str = "") -> None:
        if self._report(done, total, message):
            self.save()

    async def aset_progress(self, done: float, total: float, message: str = "") -> None:
        # Decided on the event loop: a throttled call costs no hop to a thread.
        if self._report(done, total, message):
            await self.asave()

    # -- what the attempt calls --------------------------------------------------------------

    def final(self) -> dict[str, Any] | None:
        """The metadata the outcome writes, as the attempt leaves it: when it changed since
        the last write (a throttled progress report, a change never saved), or when the
        attempt wrote some (so the outcome, and the finished signal, carry the last word).
        None: the row keeps what it holds. Raises ``TypeError`` when it cannot be stored."""
        with self._lock:
            if self.fenced_off:
                return None
            value = _checked(self.metadata, self.run_id)
            if not self._wrote and _text(value) == self._written:
                return None
            return value

    def restart(self) -> None:
        """An ``atomic=True`` attempt runs its body again after a rollback (the database
        failed its transaction): what the rolled-back try changed or wrote is undone."""
        with self._lock:
            self.metadata.clear()
            self.metadata.update(json.loads(self._claimed))
            self._written, self._wrote = self._claimed, False

    # -- inside --------------------------------------------------------------------------------

    def _report(self, done: float, total: float, message: str) -> bool:
        """Put the report in the metadata; whether it is due to be written now."""
        entry = progress_entry(done, total, message)
        with self._lock:
            self.metadata[PROGRESS_KEY] = entry
            # Too soon: left for a later call, or for the outcome (final).
            return not self.fenced_off and time.monotonic() - self._last_write >= PROGRESS_INTERVAL

    def _write_locked(self) -> None:
        value = _checked(self.metadata, self.run_id)
        text = _text(value)
        if self.fenced_off or text == self._written:
            return
        landed = (
            Run.objects.using(self.database)
            .filter(pk=self.run_id, attempt=self.attempt, status=RunStatus.RUNNING)
            .update(metadata=value)
        )
        self._last_write = time.monotonic()
        if landed:
            self._written, self._wrote = text, True
            return
        self.fenced_off = True
        logger.warning(
            "Metadata of run %s attempt %d dropped: the run was taken over meanwhile; this "
            "attempt's later saves are dropped too",
            self.run_id,
            self.attempt,
            extra={RUN_ID: self.run_id, ATTEMPT: self.attempt},
        )


def _checked(metadata: Any, run_id: int) -> dict[str, Any]:
    """The metadata as plain JSON, or a ``TypeError`` naming what cannot be stored."""
    if not isinstance(metadata, dict):  # context.metadata is a dict; a task may not rebind it
        raise TypeError(f"The metadata of run {run_id} must be a dict, not {metadata!r}.")
    return to_json_value(
        metadata, "metadata", f"Cannot save the metadata of run {run_id}", raises=TypeError
    )


def _text(value: Any) -> str:
    # Key order kept: the same dict written twice gives the same text.
    return json.dumps(value, separators=(",", ":"))


__all__ = ["PROGRESS_INTERVAL", "MetadataWriter"]
