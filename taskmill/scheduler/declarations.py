"""Schedules declared in code: ``@taskmill.schedule(...)`` stacked on a task, and the sync.

The decorator checks its arguments at import time (an invalid cron expression or time zone
fails there, with the reason) and records a declaration. ``sync_schedules()`` (run when
workers and schedulers start, and by ``manage.py taskmill sync-schedules``) writes the
declarations to the database: it creates missing schedules, updates changed ones, and
disables code-owned schedules that are no longer declared. It never deletes: their history
and fire state stay, and re-declaring one brings it back. For code-owned schedules the code
is the source of truth, ``enabled`` included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..compat import BaseTask, InvalidTask
from ..exceptions import InvalidSchedule
from ..schedule_rules import remember_task
from ..triggers import (
    MAX_DURATION,
    get_zone,
    moment_problem,
    validate_cron,
)

logger = logging.getLogger("taskmill.scheduler")

MISFIRE_POLICIES = ("skip", "run_once", "catch_up")


@dataclass(frozen=True)
class Declaration:
    """One ``@taskmill.schedule``: the values of its ``Schedule`` row."""

    name: str
    task_path: str
    kind: str
    cron: str = ""
    interval: timedelta | None = None
    run_at: datetime | None = None
    timezone: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue_name: str = ""
    priority: int | None = None
    backend: str = ""
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_fires: int | None = None
    max_instances: int | None = None
    enabled: bool = True
    run_on_creation: bool = False
    misfire_grace: timedelta = timedelta(seconds=60)
    misfire_policy: str = "run_once"
    fire_time_kwarg: str = ""
    depends_on: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        values = asdict(self)
        del values["depends_on"]
        return values


_declarations: dict[str, Declaration] = {}


def declarations() -> dict[str, Declaration]:
    return dict(_declarations)


def autodiscover() -> None:
    """Import each installed app's ``tasks`` and ``schedules`` modules: the declarations."""
    from django.utils.module_loading import autodiscover_modules

    from .. import registry

    registry.autodiscover()
    autodiscover_modules("schedules")


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidSchedule(f"{name} must be an aware datetime, not {value!r}.")
    problem = moment_problem(value) if value is not None else None
    if problem:
        raise InvalidSchedule(f"{name}: {problem}.")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration(name: str, value: Any) -> timedelta:
    """A ``timedelta``, or a number of seconds: the two forms documented for durations."""
    if isinstance(value, timedelta):
        if abs(value) > MAX_DURATION:
            raise InvalidSchedule(f"{name}= must be at most {MAX_DURATION.days} days, not {value}.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSchedule(
            f"{name}= must be a timedelta or a number of seconds, not "
            f"{type(value).__name__} {value!r}."
        )
    try:
        duration = timedelta(seconds=value)
    except (ValueError, OverflowError):  # NaN, infinity, more than 999,999,999 days
        duration = None
    if duration is None or abs(duration) > MAX_DURATION:
        raise InvalidSchedule(
            f"{name}= must be a number of seconds of at most {MAX_DURATION.days} days, "
            f"not {value!r}."
        )
    return duration


def _arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """The schedule's arguments as stored, checked as any enqueue checks them."""
    from ..serialization import to_json_value

    if isinstance(args, str | bytes | dict) or not isinstance(args, Sequence):
        raise InvalidSchedule(f"args must be a list or tuple, not {type(args).__name__}.")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InvalidSchedule(f"kwargs must be a dict, not {type(kwargs).__name__}.")
    context = "Schedule arguments must be JSON"
    try:
        return (
            to_json_value(list(args), "args", context),
            to_json_value(dict(kwargs or {}), "kwargs", context),
        )
    except InvalidTask as exc:
        raise InvalidSchedule(str(exc)) from None


def _check_names(**values: Any) -> None:
    from ..serialization import text_problem

    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InvalidSchedule(f"{name} must be a string, not {type(value).__name__}.")
        # Refused here, at import time, rather than by the sync's INSERT on PostgreSQL.
        problem = text_problem(name, value) if value else None
        if problem:
            raise InvalidSchedule(f"{problem}.")


def _dependency_names(depends_on: Any) -> tuple[str, ...]:
    if isinstance(depends_on, str):  # a single name would be read letter by letter
        raise InvalidSchedule(f"depends_on takes a list of schedule names, not {depends_on!r}.")
    try:
        names = tuple(depends_on)
    except TypeError:
        raise InvalidSchedule(
            f"depends_on takes a list of schedule names, not {depends_on!r}."
        ) from None
    if not all(isinstance(item, str) for item in names):
        raise InvalidSchedule(f"depends_on takes a list of schedule names, not {depends_on!r}.")
    _check_names(**{f"depends_on[{index}]": item for index, item in enumerate(names)})
    return names


def schedule(
    cron: str | None = None,
    *,
    every: timedelta | float | None = None,
    at: datetime | None = None,
    name: str | None = None,
    tz: str | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    queue_name: str = "",
    priority: int | None = None,
    backend: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    max_fires: int | None = None,
    max_instances: int | None = None,
    enabled: bool = True,
    run_on_creation: bool = False,
    misfire_grace: timedelta | float = 60,
    misfire_policy: str = "run_once",
    fire_time_kwarg: str = "",
    depends_on: Iterable[str] = (),
) -> Callable[[BaseTask], BaseTask]:
    """Declare a schedule for the task below: ``cron=`` (5 or 6 fields), ``every=`` or ``at=``.

    Stack several on one task, each with its own ``name`` (the first defaults to the task's
    path). ``depends_on`` names other schedules. ``tz`` defaults to settings.TIME_ZONE.
    ``max_instances``: a fire while that many of its runs are pending or running is skipped.
    ``run_on_creation``: the sync that creates the schedule makes it fire once at once (an
    existing schedule it updates does not fire for it).
    """
    # "Given" means not None: every=0 is an interval, and a wrong one, not a missing one.
    kinds = [
        kind
        for kind, value in (("cron", cron), ("interval", every), ("once", at))
        if value is not None
    ]
    if len(kinds) != 1:
        raise InvalidSchedule("@taskmill.schedule needs exactly one of cron=, every= or at=.")
    if cron is not None:
        cron = validate_cron(cron)
    if every is not None:
        every = _duration("every", every)
        if every <= timedelta(0):
            raise InvalidSchedule(f"every= must be a positive interval, not {every}.")
    misfire_grace = _duration("misfire_grace", misfire_grace)
    if misfire_grace < timedelta(0):
        raise InvalidSchedule(f"misfire_grace= cannot be negative, not {misfire_grace}.")
    if not isinstance(misfire_policy, str) or misfire_policy not in MISFIRE_POLICIES:
        raise InvalidSchedule(
            f"misfire_policy must be one of {', '.join(MISFIRE_POLICIES)}, not {misfire_policy!r}."
        )
    if tz is None:
        from ..models.schedules import default_time_zone

        tz = default_time_zone()
    get_zone(tz)
    args, kwargs = _arguments(args, kwargs)
    _check_names(name=name, queue_name=queue_name, backend=backend)
    if not isinstance(fire_time_kwarg, str) or (
        fire_time_kwarg and not fire_time_kwarg.isidentifier()
    ):
        raise InvalidSchedule(f"fire_time_kwarg {fire_time_kwarg!r} is not a valid name.")
    if max_fires is not None and (not _is_int(max_fires) or max_fires < 1):
        raise InvalidSchedule(f"max_fires must be a positive integer or None, not {max_fires!r}.")
    if max_instances is not None and (not _is_int(max_instances) or max_instances < 1):
        raise InvalidSchedule(
            f"max_instances must be a positive integer or None, not {max_instances!r}."
        )
    if priority is not None and not _is_int(priority):
        raise InvalidSchedule(f"priority must be an integer or None, not {priority!r}.")
    if not isinstance(enabled, bool):
        raise InvalidSchedule(f"enabled must be True or False, not {enabled!r}.")
    if not isinstance(run_on_creation, bool):
        raise InvalidSchedule(f"run_on_creation must be True or False, not {run_on_creation!r}.")
    depends_on = _dependency_names(depends_on)
    at, start, end = _aware("at", at), _aware("start", start), _aware("end", end)

    def decorator(task: BaseTask) -> BaseTask:
        if not isinstance(task, BaseTask):
            raise TypeError(
                f"@taskmill.schedule goes above @task: it schedules a task object, not {task!r}."
            )
        declaration = Declaration(
            name=name or task.module_path,
            task_path=task.module_path,
            kind=kinds[0],
            cron=cron or "",
            interval=every,
            run_at=_aware("at", at),
            timezone=tz,
            args=args,
            kwargs=kwargs,
            queue_name=queue_name,
            priority=priority,
            backend=backend,
            start_at=_aware("start", start),
            end_at=_aware("end", end),
            max_fires=max_fires,
            max_instances=max_instances,
            enabled=enabled,
            run_on_creation=run_on_creation,
            misfire_grace=misfire_grace,
            misfire_policy=misfire_policy,
            fire_time_kwarg=fire_time_kwarg,
            depends_on=depends_on,
        )
        existing = _declarations.get(declaration.name)
        if existing is not None and existing != declaration:
            # Re-importing a module declares the same thing again; anything else is a clash.
            raise InvalidSchedule(
                f"Two schedules are named {declaration.name!r}: give each schedule of a task "
                "its own name=."
            )
        remember_task(task)
        _declarations[declaration.name] = declaration
        return task

    return decorator


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.disabled)} disabled, {len(self.unchanged)} unchanged"
        )


def sync_schedules(database: str = "default") -> SyncReport:
    """Write the code's declarations to the database (see the module's docstring)."""
    try:
        return _sync(database)
    except IntegrityError:
        # Another process created the same schedule at the same moment: its rows are
        # committed now, so a second pass sees them and updates instead.
        return _sync(database)


def _check_declared_graph(declared: dict[str, Declaration], known: set[str]) -> None:
    for declaration in declared.values():
        for dependency in declaration.depends_on:
            if dependency not in known:
                raise ValidationError(
                    f"Schedule {declaration.name!r} depends on {dependency!r}, which is "
                    "not a schedule."
                )
    # Depth-first search over the declared edges: a back edge is a cycle.
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dependency in getattr(declared.get(name), "depends_on", ()):
            if state.get(dependency) == 1:
                cycle = [*path[path.index(dependency) :], dependency]
                raise ValidationError(
                    "Schedule dependencies must not form a cycle: " + " -> ".join(cycle)
                )
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[name] = 2

    for name in declared:
        if name not in state:
            visit(name, [name])


def _sync(database: str) -> SyncReport:
    from ..models import Schedule

    report = SyncReport()
    declared = declarations()
    with transaction.atomic(using=database):
        rows = _locked_rows(Schedule, database, list(declared))
        known = set(rows) | set(declared)
        if any(declaration.depends_on for declaration in declared.values()):
            known |= set(Schedule.objects.using(database).values_list("name", flat=True))
        _check_declared_graph(declared, known)
        for declaration in declared.values():
            row = rows.get(declaration.name)
            values = declaration.values()
            if row is None:
                row = Schedule(**values, code_owned=True)
                row.full_clean(validate_unique=False)
                row.save(using=database)
                rows[row.name] = row
                report.created.append(row.name)
                continue
            changed = [name for name, value in values.items() if getattr(row, name) != value]
            if changed or not row.code_owned:
                for name in changed:
                    setattr(row, name, values[name])
                row.code_owned = True
                row.full_clean(validate_unique=False)
                row.save(using=database)
                report.updated.append(row.name)
            else:
                report.unchanged.append(row.name)
        for name, row in rows.items():
            if name not in declared and row.code_owned and row.enabled:
                row.enabled = False
                row.save(using=database)
                report.disabled.append(name)
                logger.warning("Schedule %r is no longer declared in code: disabled", name)
        _sync_dependencies(declared, rows, database)
    return report


def _locked_rows(model: Any, database: str, names: list[str]) -> dict[str, Any]:
    # Locked for the sync, so that concurrent syncs (workers starting together) take turns.
    from django.db.models import Q

    query = (
        model.objects.using(database)
        .select_for_update()
        .filter(Q(code_owned=True) | Q(name__in=names))
    )
    return {row.name: row for row in query}


def _sync_dependencies(
    declared: dict[str, Declaration], rows: dict[str, Any], database: str
) -> None:
    from ..models import Schedule

    wanted_names = {name for d in declared.values() for name in d.depends_on}
    ids = dict(
        Schedule.objects.using(database).filter(name__in=wanted_names).values_list("name", "pk")
    )
    for declaration in declared.values():
        row = rows[declaration.name]
        wanted = {ids[name] for name in declaration.depends_on}
        current = set(row.depends_on.values_list("pk", flat=True))
        if wanted != current:
            row.depends_on.set(wanted)
