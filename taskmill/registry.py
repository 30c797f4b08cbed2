"""Which task objects a worker may run.

Every taskmill ``Task`` registers itself under its module path when it is created (that is,
when the module defining it is imported). A worker resolves a run's ``task_path`` here and
nowhere else. For a path it has not seen yet it may import the module, but only a module
inside an installed Django app, and then only if that import registers the path.
"""

from __future__ import annotations

import threading
from importlib import import_module
from typing import TYPE_CHECKING

from django.apps import apps

from .exceptions import TaskNotRegistered

if TYPE_CHECKING:
    from .tasks import Task

_tasks: dict[str, Task] = {}
_lock = threading.Lock()


def register(task: Task) -> None:
    # `.using()` makes modified copies; the decorated original stays the registered one.
    with _lock:
        _tasks.setdefault(task.module_path, task)


def registered_tasks() -> dict[str, Task]:
    return dict(_tasks)


def _in_installed_app(module_name: str) -> bool:
    return any(
        module_name == config.name or module_name.startswith(config.name + ".")
        for config in apps.get_app_configs()
    )


def resolve(task_path: str) -> Task:
    """Return the registered task for ``task_path`` or raise ``TaskNotRegistered``."""
    task = _tasks.get(task_path)
    if task is not None:
        return task
    module_name, _, _ = task_path.rpartition(".")
    if module_name and _in_installed_app(module_name):
        try:
            import_module(module_name)
        except Exception as exc:  # a row's path must not get past here with any error
            raise TaskNotRegistered(
                f"Task {task_path!r} is not registered: importing {module_name!r} failed "
                f"({type(exc).__name__}: {exc})."
            ) from exc
        task = _tasks.get(task_path)
        if task is not None:
            return task
    raise TaskNotRegistered(
        f"Task {task_path!r} is not registered: no taskmill task is defined at that path in an "
        "installed app. A worker runs only tasks declared with @task in code it has imported."
    )


def resolve_or_none(task_path: str) -> Task | None:
    """The registered task for ``task_path``, or None (a run whose task is gone from code)."""
    try:
        return resolve(task_path)
    except TaskNotRegistered:
        return None


def autodiscover() -> None:
    """Import each installed app's ``tasks`` module, as a worker does at start-up."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
