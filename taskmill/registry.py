"""Which task objects a worker may run.

Every taskmill ``Task`` registers itself under its module path when it is created (that is,
when the module defining it is imported), and under each of its ``aliases``: the paths it had
before a rename, so that runs and schedules stored under an old path run the renamed function.
A worker resolves a run's ``task_path`` here and nowhere else. For a path it has not seen yet
it may import the module, but only a module inside an installed Django app, and then only if
that import registers the path (as a task's or as an alias).

A path names one task: an alias that is another registered task's path, or the alias of
another task too, is refused when the second of the two registers (``TaskAliasConflict``),
whichever module is imported first.
"""

from __future__ import annotations

import threading
from importlib import import_module
from typing import TYPE_CHECKING

from django.apps import apps

from .exceptions import TaskAliasConflict, TaskNotRegistered

if TYPE_CHECKING:
    from .tasks import Task

_tasks: dict[str, Task] = {}
# An old path -> the path of the task registered under it as an alias.
_aliases: dict[str, str] = {}
_lock = threading.Lock()


def register(task: Task) -> None:
    """Register ``task`` under its path and its aliases; raise ``TaskAliasConflict`` if one
    of them already names another task."""
    path = task.module_path
    with _lock:
        # Checked before anything is written: a refused task leaves the registry as it was.
        owner = _aliases.get(path)
        if owner is not None and owner != path:
            raise TaskAliasConflict(
                f"Task {path!r} is registered, but {owner!r} already declares "
                f"{path!r} as one of its aliases: a path names one task. Remove the alias "
                f"from {owner!r}, or rename one of the two."
            )
        for alias in getattr(task, "aliases", ()):
            if alias in _tasks:
                raise TaskAliasConflict(
                    f"Task {path!r} declares the alias {alias!r}, which is the path of "
                    "another registered task: a path names one task. Remove the alias, or "
                    "the old task."
                )
            owner = _aliases.get(alias)
            if owner is not None and owner != path:
                raise TaskAliasConflict(
                    f"Task {path!r} declares the alias {alias!r}, which {owner!r} declares "
                    "too: a path names one task."
                )
        # `.using()` makes modified copies; the decorated original stays the registered one.
        _tasks.setdefault(path, task)
        for alias in getattr(task, "aliases", ()):
            _aliases.setdefault(alias, path)


def registered_tasks() -> dict[str, Task]:
    return dict(_tasks)


def registered_aliases() -> dict[str, str]:
    """Each alias (an old path) with the path of the task it names now."""
    return dict(_aliases)


def _registered(task_path: str) -> Task | None:
    """The task registered under ``task_path``, as its path or as an alias; None if none."""
    task = _tasks.get(task_path)
    if task is None:
        target = _aliases.get(task_path)
        if target is not None:
            task = _tasks.get(target)
    return task


def _in_installed_app(module_name: str) -> bool:
    return any(
        module_name == config.name or module_name.startswith(config.name + ".")
        for config in apps.get_app_configs()
    )


def resolve(task_path: str) -> Task:
    """Return the registered task for ``task_path`` (its path or one of its aliases) or raise
    ``TaskNotRegistered``."""
    task = _registered(task_path)
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
        task = _registered(task_path)
        if task is not None:
            return task
    raise TaskNotRegistered(
        f"Task {task_path!r} is not registered: no taskmill task is defined at that path in an "
        "installed app, and no task declares it among its aliases. A worker runs only tasks "
        "declared with @task in code it has imported."
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
