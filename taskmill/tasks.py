"""taskmill's Task: Django's Task, registered for the worker, with bulk enqueue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import registry
from .compat import BaseTask, TaskResult

# One call of a task for a bulk enqueue: (args, kwargs).
Call = tuple[Sequence[Any], Mapping[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Task(BaseTask):
    """The ``task_class`` of taskmill's backend: ``@task`` on a taskmill backend makes these."""

    def __post_init__(self) -> None:
        # Explicit base call: zero-argument super() breaks in slotted dataclasses.
        BaseTask.__post_init__(self)
        registry.register(self)

    def enqueue_many(self, calls: Iterable[Call]) -> list[TaskResult]:
        """Enqueue many calls of this task with one INSERT; ``calls`` holds (args, kwargs) pairs."""
        backend = self.get_backend()
        if not hasattr(backend, "enqueue_many"):
            raise TypeError(
                f"Backend {self.backend!r} ({type(backend).__qualname__}) has no bulk enqueue; "
                "enqueue_many needs taskmill's DatabaseBackend."
            )
        return backend.enqueue_many(self, calls)
