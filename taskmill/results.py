"""Turning stored runs into the framework's ``TaskResult`` objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any

from . import registry
from .compat import BaseTask, TaskError, TaskResult, TaskResultStatus, task_backends
from .exceptions import TaskNotRegistered
from .status import RunStatus

# What Django's four statuses make of taskmill's six: a run waiting for its dependencies
# is READY to Django, a cancelled one FAILED (its errors say it was cancelled).
FRAMEWORK_STATUS = {
    RunStatus.WAITING: TaskResultStatus.READY,
    RunStatus.CANCELLED: TaskResultStatus.FAILED,
}


def framework_status(status: str) -> TaskResultStatus:
    return TaskResultStatus(FRAMEWORK_STATUS.get(status, status))


class UnregisteredTask:
    """Stands in for the task of a stored run whose path names no task registered in this
    process (its code was removed or renamed since, or the row names something else).

    ``get_result()`` returns such a run like any other: its status, arguments, errors and
    return value are what the row says. Only the task cannot be had: ``module_path`` is the
    stored path and ``backend``/``get_backend()`` the run's alias (so ``refresh()`` works);
    anything else about the task raises ``TaskNotRegistered`` saying why.
    """

    __slots__ = ("backend", "module_path", "why")

    def __init__(self, module_path: str, backend: str, why: str) -> None:
        self.module_path = module_path
        self.backend = backend
        self.why = why

    def get_backend(self) -> Any:
        return task_backends[self.backend]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probe for optional hooks
            raise AttributeError(name)
        raise TaskNotRegistered(f"{self.why} (asked for the task's {name!r})")

    def __repr__(self) -> str:
        return f"<UnregisteredTask {self.module_path!r}>"


def task_of_run(task_path: str, backend: str) -> BaseTask | UnregisteredTask:
    """The registered task a stored run names, or an ``UnregisteredTask`` saying why not."""
    try:
        return registry.resolve(task_path)
    except TaskNotRegistered as exc:
        return UnregisteredTask(task_path, backend, str(exc))


def task_variant(task: BaseTask, **values: Any) -> BaseTask:
    """``task`` with some attributes changed, without re-validating it.

    A stored run keeps the queue and priority it was enqueued with even if the settings
    changed since, so this must not fail where ``task.using()`` would.
    """
    if all(getattr(task, name) == value for name, value in values.items()):
        return task
    variant = object.__new__(type(task))
    for task_field in fields(task):
        object.__setattr__(variant, task_field.name, getattr(task, task_field.name))
    for name, value in values.items():
        object.__setattr__(variant, name, value)
    return variant


def build_result(
    task: BaseTask | UnregisteredTask,
    *,
    run_id: int,
    status: str,
    backend: str,
    queue_name: str,
    priority: int,
    run_after: datetime | None,
    args: list[Any],
    kwargs: dict[str, Any],
    enqueued_at: datetime | None,
    started_at: datetime | None,
    finished_at: datetime | None,
    last_attempted_at: datetime | None,
    errors: list[dict[str, str]],
    worker_ids: list[str],
    return_value: Any = None,
    metadata: dict[str, Any] | None = None,
) -> TaskResult:
    variant = (
        task
        if isinstance(task, UnregisteredTask)
        else task_variant(
            task, queue_name=queue_name, priority=priority, run_after=run_after, backend=backend
        )
    )
    return _result_of_variant(
        variant,
        run_id=run_id,
        status=status,
        backend=backend,
        args=args,
        kwargs=kwargs,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=last_attempted_at,
        errors=errors,
        worker_ids=worker_ids,
        return_value=return_value,
        metadata=metadata,
    )


def _result_of_variant(
    variant: BaseTask | UnregisteredTask,
    *,
    run_id: int,
    status: str,
    backend: str,
    args: list[Any],
    kwargs: dict[str, Any],
    enqueued_at: datetime | None,
    started_at: datetime | None,
    finished_at: datetime | None,
    last_attempted_at: datetime | None,
    errors: Sequence[dict[str, str]],
    worker_ids: Sequence[str],
    return_value: Any,
    metadata: dict[str, Any] | None,
) -> TaskResult:
    """The result, given the task variant the run was enqueued as (``task_variant``)."""
    return _new_result(
        task=variant,
        id=str(run_id),
        status=framework_status(status),
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=last_attempted_at,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=[_task_error(error) for error in errors],
        worker_ids=list(worker_ids),
        _return_value=return_value,
        metadata=result_metadata(metadata),
    )


def result_metadata(stored: Any) -> dict[str, Any]:
    """A run's metadata as its result shows it: always a dict (``{}`` for none). The very
    dict given, not a copy: a running attempt's context and its result share one."""
    return stored if isinstance(stored, dict) else {}


def _task_error(error: dict[str, str]) -> TaskError:
    # By name: an entry may carry a key of taskmill's own (how its attempt counted).
    return TaskError(
        exception_class_path=error["exception_class_path"], traceback=error["traceback"]
    )


# Fields the framework fills itself when not given: (name, default, default_factory).
_RESULT_DEFAULTS = tuple(
    (field.name, field.default, field.default_factory)
    for field in fields(TaskResult)
    if field.default is not MISSING or field.default_factory is not MISSING
)
_set = object.__setattr__  # TaskResult is frozen
# Fields results_of_new does not name (a later Django's), with their defaults.
_NAMED_BY_RESULTS_OF_NEW = {
    "task",
    "id",
    "status",
    "enqueued_at",
    "started_at",
    "finished_at",
    "last_attempted_at",
    "args",
    "kwargs",
    "backend",
    "errors",
    "worker_ids",
    "_return_value",
    "metadata",
}
_LATER_FIELDS = tuple(
    entry for entry in _RESULT_DEFAULTS if entry[0] not in _NAMED_BY_RESULTS_OF_NEW
)


def _new_result(**values: Any) -> TaskResult:
    """A TaskResult without its ``__post_init__``, which re-normalises args and kwargs.

    Stored arguments are JSON already (they were checked at enqueue and read back from
    JSON), so that walk only costs time: bulk enqueue builds thousands of results.
    """
    result = object.__new__(TaskResult)
    for name, value in values.items():
        _set(result, name, value)
    for name, default, factory in _RESULT_DEFAULTS:
        if name not in values:
            _set(result, name, default if factory is MISSING else factory())
    return result


# What a run that has not got that far yet says about itself.
_NOT_YET: dict[str, Any] = {
    "status": TaskResultStatus.READY,
    "started_at": None,
    "finished_at": None,
    "last_attempted_at": None,
    "errors": (),
    "worker_ids": (),
    "return_value": None,
    "metadata": None,
}


def result_of(task: BaseTask | None, run: Any, **overrides: Any) -> TaskResult:
    """A ``TaskResult`` for any run record: a ``Run`` row, a ``ClaimedRun``, a ``NewRun``.

    Attributes the record does not have take their not-yet value; ``overrides`` set the ones
    the caller knows better (a finished attempt's status, errors and return value). A run
    whose task is not registered (``task`` None) gets an ``UnregisteredTask``.
    """
    if task is None:
        task = task_of_run(run.task_path, run.backend)

    if getattr(run, "prefetched", False) and run.status == RunStatus.RUNNING and not overrides:
        overrides = _waiting_in_backlog(run)

    def value(name: str) -> Any:
        if name in overrides:
            return overrides[name]
        return getattr(run, name, _NOT_YET.get(name))

    return build_result(
        task,
        run_id=run.pk,
        status=value("status"),
        backend=run.backend,
        queue_name=run.queue_name,
        priority=run.priority,
        run_after=run.run_after,
        args=run.args,
        kwargs=run.kwargs,
        enqueued_at=run.enqueued_at,
        started_at=value("started_at"),
        finished_at=value("finished_at"),
        last_attempted_at=value("last_attempted_at"),
        errors=value("errors"),
        worker_ids=value("worker_ids"),
        return_value=value("return_value"),
        metadata=value("metadata"),
    )


def _waiting_in_backlog(run: Any) -> dict[str, Any]:
    """A claimed run that waits in its worker's backlog (a heartbeat marked it so) has not
    begun: READY, without the attempt the claim added. Its start (the claim's time, until
    the body begins) is not shown for a first attempt; a later one keeps it."""
    first = run.attempt <= 1
    return {
        "status": TaskResultStatus.READY,
        "worker_ids": run.worker_ids[:-1],
        "started_at": None if first else run.started_at,
        "last_attempted_at": None if first else run.last_attempted_at,
    }


def results_of_new(task: BaseTask, runs: Sequence[Any]) -> list[TaskResult]:
    """``result_of`` for runs just enqueued (``NewRun``s): nothing has happened to them yet,
    so their not-yet values are known without asking each record, and runs enqueued
    together share one task variant and status (a bulk enqueue builds thousands of
    results: the variant, checked and copied per run, was a fifth of its time)."""
    variants: dict[tuple[Any, ...], BaseTask] = {}
    statuses: dict[str, TaskResultStatus] = {}
    results = []
    # Bound once: the loop below runs thousands of times per bulk enqueue, and names looked
    # up in the module on each turn were a tenth of its time.
    new, put, cls, later = object.__new__, _set, TaskResult, _LATER_FIELDS
    for run in runs:
        key = (run.queue_name, run.priority, run.run_after, run.backend)
        variant = variants.get(key)
        if variant is None:
            variant = variants[key] = task_variant(
                task,
                queue_name=run.queue_name,
                priority=run.priority,
                run_after=run.run_after,
                backend=run.backend,
            )
        status = statuses.get(run.status)
        if status is None:
            status = statuses[run.status] = framework_status(run.status)
        # _new_result's work, spelled out: thousands of these per bulk enqueue.
        result = new(cls)
        put(result, "task", variant)
        put(result, "id", str(run.pk))
        put(result, "status", status)
        put(result, "enqueued_at", run.enqueued_at)
        put(result, "started_at", None)
        put(result, "finished_at", None)
        put(result, "last_attempted_at", None)
        put(result, "args", run.args)
        put(result, "kwargs", run.kwargs)
        put(result, "backend", run.backend)
        put(result, "errors", [])
        put(result, "worker_ids", [])
        put(result, "_return_value", None)
        # What .using(metadata=...) gave, one dict per run (new_runs copied it); a dict of
        # its own for each run without, as result_metadata() gives.
        metadata = run.extra.get("metadata")
        put(result, "metadata", metadata if metadata.__class__ is dict else {})
        if later:  # none in Django 6.1 and the backport
            for name, default, factory in later:
                put(result, name, default if factory is MISSING else factory())
        results.append(result)
    return results
