"""taskmill: a task queue and scheduler for Django on the database you already have.

Use Django's tasks API (``@task``, ``.enqueue()``, ``.get_result()``) with
``taskmill.backend.DatabaseBackend`` as the backend; this module adds what that API lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__version__ = "0.1.0"

# The control API (taskmill.control), re-exported.
CONTROL = (
    "cancel",
    "pause_queue",
    "resume_queue",
    "retry",
    "run_status",
    "shutdown_worker",
    "stop",
)

# Pausing schedules (taskmill.schedule_control), re-exported.
SCHEDULE_CONTROL = ("pause_schedule", "resume_schedule")

# The base of taskmill's errors, the one the schedule decorator raises, what a task raises to
# snooze or cancel its own run, and a batch's refusal (taskmill.exceptions), re-exported.
ERRORS = (
    "BatchFinished",
    "Cancel",
    "InvalidSchedule",
    "Snooze",
    "TaskmillError",
    "TooManySnoozes",
)

# Flow control (taskmill.limits), re-exported.
LIMITS = ("Rate", "set_queue_limits")

# Batches (taskmill.batches, taskmill.models), re-exported.
BATCHES = ("Batch", "batch", "get_batch")

__all__ = [
    "enqueue_many",
    "schedule",
    "task",
    *CONTROL,
    *SCHEDULE_CONTROL,
    *ERRORS,
    *LIMITS,
    *BATCHES,
]


def __getattr__(name: str) -> Any:
    # `task` comes from the framework module, which needs configured settings: import lazily
    # so that `import taskmill` works before django.setup().
    if name == "task":
        from .tasks import task

        return task
    if name in CONTROL:
        from . import control

        return getattr(control, name)
    if name in SCHEDULE_CONTROL:
        from . import schedule_control

        return getattr(schedule_control, name)
    if name in ERRORS:
        from . import exceptions

        return getattr(exceptions, name)
    if name == "Rate":
        from .limits.rates import Rate

        return Rate
    if name == "set_queue_limits":
        from .limits.queues import set_queue_limits

        return set_queue_limits
    if name == "schedule":
        from .scheduler.declarations import schedule

        return schedule
    if name == "Batch":
        from .models import Batch

        return Batch
    if name in BATCHES:
        from .batches import opening

        return getattr(opening, name)
    raise AttributeError(name)


def enqueue_many(task: Any, calls: Iterable[tuple[Any, Any]]) -> list[Any]:
    """Enqueue many (args, kwargs) calls of ``task`` at once: one transaction, bulk INSERT."""
    return task.enqueue_many(calls)
