"""What users see of an attempt: the context a task may take, and the exceptions that stand
for what happened in a child process.

Their names stay here, where they were always imported from: a run's errors record
``TaskCrashed`` by its class path, and ``RaisedInChild`` is documented by it. Running an
attempt is elsewhere: its decisions in attempt.py, where its body runs in runners/.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..compat import TaskContext as BaseTaskContext
from ..exceptions import TaskmillError
from .metadata import MetadataWriter


class TaskCrashed(TaskmillError):
    """The child process running the attempt died by itself (a crash, out of memory)."""


class RaisedInChild(Exception):
    """Stands, in the worker, for what a task raised in its child process: its message is
    the child's traceback (the exception itself cannot cross the process boundary: JSON
    only). ``task_finished`` receivers, Django's log line among them, get this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext(BaseTaskContext):
    """Django's context, plus what a long task needs to cooperate with a stop request, and
    its metadata and progress (Django's proposal new-features#141; worker/metadata.py)."""

    stop_event: threading.Event | None = None
    metadata_writer: MetadataWriter | None = None

    @property
    def stop_requested(self) -> bool:
        """True once someone asked to stop this run: return or raise soon."""
        return self.stop_event is not None and self.stop_event.is_set()

    @property
    def metadata(self) -> dict[str, Any]:
        """The run's metadata: what the caller passed with ``.using(metadata=...)`` plus
        what earlier attempts saved. Change it freely: ``save_metadata()`` writes it now,
        and what is left unsaved is written with the attempt's outcome."""
        return self.task_result.metadata

    def save_metadata(self) -> None:
        """Write ``metadata`` to the run's row now: ``get_result()`` reads it at once. A
        write refused because this attempt no longer owns the run is logged, not raised."""
        self._metadata_writer().save()

    async def asave_metadata(self) -> None:
        await self._metadata_writer().asave()

    def set_progress(self, done: float, total: float, message: str = "") -> None:
        """Report progress, stored in ``metadata["progress"]`` as ``{"done", "total",
        "message", "at"}`` and saved at once, at most a few times a second (call it for
        every row: the last report always lands, with the outcome if not before)."""
        self._metadata_writer().set_progress(done, total, message)

    async def aset_progress(self, done: float, total: float, message: str = "") -> None:
        await self._metadata_writer().aset_progress(done, total, message)

    def _metadata_writer(self) -> MetadataWriter:
        if self.metadata_writer is None:
            raise RuntimeError(
                "This context belongs to no attempt a worker runs: there is no run to save "
                "its metadata to."
            )
        return self.metadata_writer


__all__ = ["RaisedInChild", "TaskContext", "TaskCrashed"]
