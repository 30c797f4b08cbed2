"""What users see of an attempt: the context a task may take, and the exceptions that stand
for what happened in a child process.

Their names stay here, where they were always imported from: a run's errors record
``TaskCrashed`` by its class path, and ``RaisedInChild`` is documented by it. Running an
attempt is elsewhere: its decisions in attempt.py, where its body runs in runners/.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..compat import TaskContext as BaseTaskContext
from ..exceptions import TaskmillError


class TaskCrashed(TaskmillError):
    """The child process running the attempt died by itself (a crash, out of memory)."""


class RaisedInChild(Exception):
    """Stands, in the worker, for what a task raised in its child process: its message is
    the child's traceback (the exception itself cannot cross the process boundary: JSON
    only). ``task_finished`` receivers, Django's log line among them, get this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext(BaseTaskContext):
    """Django's context, plus what a long task needs to cooperate with a stop request."""

    stop_event: threading.Event | None = None

    @property
    def stop_requested(self) -> bool:
        """True once someone asked to stop this run: return or raise soon."""
        return self.stop_event is not None and self.stop_event.is_set()


__all__ = ["RaisedInChild", "TaskContext", "TaskCrashed"]
