"""What users see of an attempt: the context a task may take, and the exceptions that stand
for what happened in a child process.

Their names stay here, where they were always imported from: a run's errors record
``TaskCrashed`` by its class path, and ``RaisedInChild`` is documented by it. Running an
attempt is elsewhere: its decisions in attempt.py, where its body runs in runners/.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from ..compat import TaskContext as BaseTaskContext
from ..exceptions import TaskmillError
from .metadata import MetadataWriter

if TYPE_CHECKING:
    from ..models import Batch


class TaskCrashed(TaskmillError):
    """The child process running the attempt died by itself (a crash, out of memory)."""


class RaisedInChild(Exception):
    """Stands, in the worker, for what a task raised in its child process: its message is
    the child's traceback (the exception itself cannot cross the process boundary: JSON
    only). ``task_finished`` receivers, Django's log line among them, get this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext(BaseTaskContext):
    """Django's context, plus what a long task needs to cooperate with a stop request, and
    what a run reads about the runs around it: its metadata and progress (Django's proposal
    new-features#141; worker/metadata.py), its batch, its dependencies' results.

    The batch and the results are read from the database when first asked for, and kept: a
    task that asks for neither pays nothing. From an async task, await their ``aget_``
    twins (the ORM is not called from an event loop)."""

    stop_event: threading.Event | None = None
    metadata_writer: MetadataWriter | None = None
    database: str = "default"  # where the run's row is
    _read: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    # The task's own call, for the innermost worker middleware (taskmill.middleware).
    _body: Callable[[], Any] | None = field(default=None, init=False, repr=False, compare=False)
    # The attempt's retry rules (Attempt.would_retry), behind will_retry().
    _retry_rule: Callable[[BaseException], bool] | None = field(
        default=None, repr=False, compare=False
    )

    def _attach_body(self, body: Callable[[], Any]) -> None:
        """Set the call the middleware chain ends in (taskmill.middleware)."""
        object.__setattr__(self, "_body", body)

    def _run_body(self) -> Any:
        """The task's own call: what the innermost middleware's ``call_next`` runs."""
        if self._body is None:
            raise RuntimeError("This context has no task body attached (taskmill.middleware).")
        return self._body()

    def will_retry(self, exc: BaseException) -> bool:
        """Whether this attempt failing with ``exc`` would leave the run another attempt:
        attempts left under its ``max_attempts`` and ``exc`` one its task retries on, as
        the worker decides. A backoff that returns None (final after all) is not foreseen:
        it is not called here. False for a ``Snooze`` and a ``Cancel`` (no failures), and
        once a stop was requested (the run ends cancelled). For worker middleware that
        reports failures (taskmill.contrib.sentry)."""
        return self._retry_rule is not None and self._retry_rule(exc)

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

    @property
    def batch(self) -> Batch | None:
        """The batch this run is a member of, or None. ``context.batch.add(task, *args)``
        adds a member; ``with context.batch:`` makes the enqueues in the block members."""
        if "batch" not in self._read:
            from ..models import Batch

            found = Batch.objects.using(self.database).filter(runs__pk=self._run_id).first()
            self._read["batch"] = found
        return self._read["batch"]

    @property
    def dependency_results(self) -> dict[str, Any]:
        """What each run this one depends on (``.using(depends_on=[...])``) returned, by its
        result id, in the order they were given."""
        if "dependency_results" not in self._read:
            from ..pipelines import dependency_results

            self._read["dependency_results"] = dependency_results(self.database, self._run_id)
        return self._read["dependency_results"]

    async def aget_batch(self) -> Batch | None:
        return await sync_to_async(lambda: self.batch)()

    async def aget_dependency_results(self) -> dict[str, Any]:
        return await sync_to_async(lambda: self.dependency_results)()

    @property
    def _run_id(self) -> int:
        return int(self.task_result.id)


__all__ = ["RaisedInChild", "TaskContext", "TaskCrashed"]
