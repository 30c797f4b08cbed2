"""What a schedule may name and hold: the checks behind ``Schedule.clean()`` and the decorator,
the rule that schedule dependencies never form a cycle, and how a row tells that its
``run_on_creation`` fire is still to come.

Below the models (it imports none of them): the model, the admin, the decorator and the
scheduler all check schedules with these rules.

A schedule names its task by import path, and only a task object declared in code can be
named: taskmill's registered tasks, or a django.tasks task of another backend defined in an
installed app (a project whose tasks go elsewhere still gets taskmill's scheduler).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.core.exceptions import NON_FIELD_ERRORS

from . import registry
from .compat import BaseTask, InvalidTask, task_backends
from .exceptions import InvalidSchedule, InvalidTaskArguments, TaskNotRegistered
from .serialization import text_problem, to_json_value
from .triggers import MAX_DURATION, get_zone, moment_problem, validate_cron

if TYPE_CHECKING:
    from .models import Schedule

TEXT_FIELDS = ("name", "task_path", "kind", "cron", "timezone", "queue_name", "backend")
TEXT_FIELDS += ("misfire_policy", "fire_time_kwarg")

# Tasks named by code declarations, which may live on a backend that is not taskmill's.
_declared_tasks: dict[str, BaseTask] = {}


def remember_task(task: BaseTask) -> None:
    _declared_tasks.setdefault(task.module_path, task)


def schedulable_tasks() -> dict[str, BaseTask]:
    """Every task a schedule may name, by module path (the admin's choice list)."""
    return {**_declared_tasks, **registry.registered_tasks()}


def resolve_task(task_path: str) -> BaseTask:
    """The task object at ``task_path``; raises ``TaskNotRegistered`` if there is none."""
    task = _declared_tasks.get(task_path)
    if task is not None:
        return task
    try:
        return registry.resolve(task_path)
    except TaskNotRegistered:
        # Not a taskmill task: a task of another backend, if code in an installed app has one.
        module_name, _, attribute = task_path.rpartition(".")
        if module_name and registry._in_installed_app(module_name):
            try:
                candidate = getattr(import_module(module_name), attribute, None)
            except ImportError:
                candidate = None
            if isinstance(candidate, BaseTask) and candidate.module_path == task_path:
                return candidate
        raise


def task_for(schedule: Any) -> BaseTask:
    """The task a schedule enqueues, with its queue, priority and backend applied."""
    task = resolve_task(schedule.task_path)
    overrides: dict[str, Any] = {}
    if schedule.queue_name:
        overrides["queue_name"] = schedule.queue_name
    if schedule.priority is not None:
        overrides["priority"] = schedule.priority
    if schedule.backend:
        overrides["backend"] = schedule.backend
    return task.using(**overrides) if overrides else task


def validate_schedule(schedule: Schedule) -> dict[str, list[str]]:
    """Field name -> messages for everything wrong with ``schedule`` (empty when valid)."""
    errors: dict[str, list[str]] = {}

    def error(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    # Text a database refuses (PostgreSQL: NUL anywhere) is named here, not by the INSERT.
    for field_name in TEXT_FIELDS:
        value = getattr(schedule, field_name)
        problem = text_problem("the text", value) if isinstance(value, str) else None
        if problem:
            error(field_name, f"{problem[0].upper()}{problem[1:]}.")
    kind = schedule.kind
    if kind == "cron":
        if not schedule.cron:
            error("cron", "A cron schedule needs a cron expression.")
        else:
            try:
                schedule.cron = validate_cron(schedule.cron)
            except InvalidSchedule as exc:
                error("cron", str(exc))
    elif kind == "interval":
        if schedule.interval is None:
            error("interval", "An interval schedule needs an interval.")
        elif schedule.interval.total_seconds() <= 0:
            error("interval", "The interval must be positive.")
        elif schedule.interval > MAX_DURATION:
            error("interval", f"The interval must be at most {MAX_DURATION.days} days.")
    elif kind == "once" and schedule.run_at is None:
        error("run_at", "A once schedule needs the time to run at.")
    for field_name in ("run_at", "start_at", "end_at"):
        value = getattr(schedule, field_name)
        problem = moment_problem(value) if isinstance(value, datetime) else None
        if problem:
            error(field_name, f"{problem}.")
    try:
        get_zone(schedule.timezone)
    except InvalidSchedule as exc:
        error("timezone", str(exc))
    if schedule.start_at and schedule.end_at and schedule.end_at <= schedule.start_at:
        error("end_at", "The end must come after the start.")
    if schedule.misfire_grace is not None and schedule.misfire_grace.total_seconds() < 0:
        error("misfire_grace", "The misfire grace time cannot be negative.")
    elif schedule.misfire_grace is not None and schedule.misfire_grace > MAX_DURATION:
        error("misfire_grace", f"The misfire grace time must be at most {MAX_DURATION.days} days.")

    limit = schedule.max_instances
    if isinstance(limit, int) and not isinstance(limit, bool) and limit < 1:
        error("max_instances", "The maximum number of instances must be at least 1 (blank: none).")

    if not isinstance(schedule.args, list):
        error("args", "Positional arguments must be a JSON list.")
    if not isinstance(schedule.kwargs, dict):
        error("kwargs", "Keyword arguments must be a JSON object.")
    elif isinstance(schedule.args, list):
        # The same check as any enqueue: what one database cannot store (a NUL character on
        # PostgreSQL, deep nesting on MariaDB) is refused here, not by the INSERT.
        for field_name in ("args", "kwargs"):
            try:
                to_json_value(
                    getattr(schedule, field_name), field_name, "Cannot store the arguments"
                )
            except InvalidTaskArguments as exc:
                error(field_name, str(exc))
    name = schedule.fire_time_kwarg
    if name and not name.isidentifier():
        error("fire_time_kwarg", f"{name!r} is not a valid keyword argument name.")
    elif name and isinstance(schedule.kwargs, dict) and name in schedule.kwargs:
        error("fire_time_kwarg", f"The keyword arguments already hold {name!r}.")

    if schedule.backend and schedule.backend not in task_backends.settings:
        error("backend", f"There is no TASKS backend named {schedule.backend!r}.")
    elif schedule.task_path:
        try:
            task_for(schedule)
        except TaskNotRegistered as exc:
            error("task_path", str(exc))
        except InvalidTask as exc:
            # The backend's own validation: show it next to the field it is about.
            message = str(exc)
            field = next(
                (
                    name
                    for key, name in (("queue", "queue_name"), ("priorit", "priority"))
                    if key in message.lower()
                ),
                NON_FIELD_ERRORS,
            )
            error(field, message)
    else:
        error("task_path", "Choose the task to run.")
    return errors


# How long before ``created_at`` a creation fire's time may lie: the time ``save()`` read the
# clock, then Django's stamp, a moment later. A time set by hand further back is no such fire.
CREATION_FIRE_WINDOW = timedelta(minutes=1)


def creation_fire_pending(
    *,
    run_on_creation: bool,
    last_fire_at: datetime | None,
    fire_count: int,
    skip_count: int,
    next_fire_at: datetime | None,
    created_at: datetime | None,
) -> bool:
    """Whether a schedule row in this state still has the fire of ``run_on_creation`` to
    come (``Schedule.is_creation_fire``)."""
    return bool(
        run_on_creation
        and last_fire_at is None
        and fire_count == 0
        and skip_count == 0
        and next_fire_at is not None
        and created_at is not None
        and created_at - CREATION_FIRE_WINDOW <= next_fire_at <= created_at
    )


def find_cycle(
    schedule_id: int | None,
    dependency_ids: Iterable[int],
    edges_from: Callable[[list[int]], Iterable[tuple[int, int]]],
) -> list[int]:
    """The path back to ``schedule_id`` if it depended on ``dependency_ids``; [] if none.

    ``edges_from(ids)`` gives the stored (dependent, dependency) pairs leaving those ids:
    the search asks it once per level, so a deep graph costs one query per level.
    """
    if schedule_id is None:
        return []  # a new schedule has no dependents yet: it cannot close a cycle
    # Breadth-first through what the new dependencies depend on.
    parents: dict[int, int] = {}
    frontier = []
    for dependency in dependency_ids:
        if dependency == schedule_id:
            return [schedule_id, schedule_id]
        if dependency not in parents:
            parents[dependency] = schedule_id
            frontier.append(dependency)
    while frontier:
        edges = edges_from(frontier)
        frontier = []
        for source, target in edges:
            if target == schedule_id:
                path = [schedule_id, source]
                while path[-1] != schedule_id:
                    path.append(parents[path[-1]])
                path.reverse()
                return path
            if target not in parents:
                parents[target] = source
                frontier.append(target)
    return []
