"""The one place that knows whether the tasks framework is Django's own or the backport.

Django 6.0+ ships ``django.tasks``; Django 5.2 LTS gets the same API from the
``django-tasks`` backport (module ``django_tasks``).  Every other module imports these
names from here and never from either package directly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from functools import cache
from types import ModuleType
from typing import Any

import django

try:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResultStatus,
        task,
        task_backends,
    )
    from django.tasks import TaskResult as FrameworkTaskResult
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        DEFAULT_TASK_PRIORITY,
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        TASK_REFRESH_ATTRS,
        TaskError,
    )
    from django.tasks.base import Task as BaseTask
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started

    TASKS_FRAMEWORK = "django.tasks"
except ImportError:  # Django 5.2 LTS
    try:
        from django_tasks import (
            DEFAULT_TASK_BACKEND_ALIAS,
            DEFAULT_TASK_QUEUE_NAME,
            TaskContext,
            TaskResultStatus,
            task,
            task_backends,
        )
        from django_tasks import TaskResult as FrameworkTaskResult
    except ImportError as exc:  # pragma: no cover - depends on the installed Django
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "taskmill needs Django's tasks framework: use Django 6.0 or newer, or install "
            "the backport on Django 5.2 with `pip install django-taskmill[backport]`."
        ) from exc
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import (
        DEFAULT_TASK_PRIORITY,
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        TASK_REFRESH_ATTRS,
        TaskError,
    )
    from django_tasks.base import Task as BaseTask
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started

    TASKS_FRAMEWORK = "django_tasks"

# Django 6.0+ may have the backport installed beside its own framework (Wagtail imports
# django_tasks on any Django). Its signals are other Signal objects, and its registry
# (django_tasks.task_backends) a second one reading the same TASKS: docs/tasks.md says how the
# two coexist. None on Django 5.2, where the backport is the framework.
BACKPORT_PACKAGE = "django_tasks" if TASKS_FRAMEWORK == "django.tasks" else None


def imported_backport(module: str = "") -> ModuleType | None:
    """The backport's package (or its ``module``, e.g. ``"signals"``) when something imported
    it beside Django's own framework; None otherwise. Never imports it: a receiver cannot be
    connected to a module nobody imported, and importing it would switch on its log lines."""
    if BACKPORT_PACKAGE is None:
        return None
    return sys.modules.get(f"{BACKPORT_PACKAGE}.{module}" if module else BACKPORT_PACKAGE)


def result_error(error: type[Exception]) -> type[Exception]:
    """What to raise for ``error`` (``TaskResultDoesNotExist`` or ``TaskResultMismatch``): the
    framework's class, or, when the backport is imported beside Django's own framework, a
    subclass of it and of the backport's class of the same name, so that code written
    against either package catches it (``except django_tasks.exceptions....`` in Wagtail)."""
    backport = imported_backport("exceptions")
    if backport is None:
        return error
    return _caught_by_both(error, getattr(backport, error.__name__))


@cache
def _caught_by_both(error: type[Exception], backport_error: type[Exception]) -> type[Exception]:
    return type(error.__name__, (error, backport_error), {"__module__": error.__module__})


# Django 6.1's task() hands the options it does not know (max_attempts=...) to the backend's
# Task class; Django 6.0's and the backport's refuse them: @taskmill.task takes them there.
DECORATOR_TAKES_OPTIONS = TASKS_FRAMEWORK == "django.tasks" and django.VERSION >= (6, 1)

# ``TaskResult.metadata`` (Django's proposal new-features#141): a dict the task writes about
# itself. Neither Django 6.1 nor the backport has the field yet, so taskmill's results are a
# subclass that adds it; once the framework has it, its own class is used as it is.
FRAMEWORK_HAS_METADATA = "metadata" in {f.name for f in fields(FrameworkTaskResult)}

if FRAMEWORK_HAS_METADATA:  # pragma: no cover - a later Django's
    TaskResult = FrameworkTaskResult
else:

    @dataclass(frozen=True, slots=True, kw_only=True)
    class TaskResult(FrameworkTaskResult):  # type: ignore[no-redef]
        """The framework's ``TaskResult`` with ``metadata``: what the caller passed with
        ``.using(metadata=...)`` and what the task saved (``{}`` when nothing), as the
        proposal names it. ``isinstance(result, <the framework's TaskResult>)`` holds."""

        metadata: dict[str, Any] = field(default_factory=dict)

        # The framework's refresh() copies a fixed set of attributes, metadata not among
        # them: one read of the run, every attribute copied.
        def refresh(self) -> None:
            _refreshed(self, self.task.get_backend().get_result(self.id))

        async def arefresh(self) -> None:
            _refreshed(self, await self.task.get_backend().aget_result(self.id))

    def _refreshed(result: Any, fresh: Any) -> None:
        for name in (*TASK_REFRESH_ATTRS, "metadata"):
            object.__setattr__(result, name, getattr(fresh, name))


__all__ = [
    "BACKPORT_PACKAGE",
    "DECORATOR_TAKES_OPTIONS",
    "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_PRIORITY",
    "DEFAULT_TASK_QUEUE_NAME",
    "FRAMEWORK_HAS_METADATA",
    "TASKS_FRAMEWORK",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTask",
    "BaseTaskBackend",
    "FrameworkTaskResult",
    "InvalidTask",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "imported_backport",
    "result_error",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
