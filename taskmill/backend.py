"""``DatabaseBackend``: the django.tasks backend contract, on the project's database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, TypeGuard

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from . import hooks, registry, wakeup
from .backoff import NEW_FORM, PROPOSAL_URL, describe, read_form
from .batches import membership as batch_membership
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    TaskResult,
    TaskResultDoesNotExist,
    imported_backport,
    result_error,
    task_enqueued,
)
from .db import NewRun, get_engine, unsupported_vendor
from .db.records import NEW_RUN_COLUMN_SET
from .followups import lock_dependencies, settle_new_dependent
from .limits import keys as limit_keys
from .limits.queues import parse_queue_limits
from .models import ACTIVE_STATUSES, Run, RunStatus
from .results import result_of, results_of_new, task_of_run
from .serialization import normalize_arguments, text_problem
from .signalling import enqueued_heard, send
from .tasks import Call, Task, checked_metadata

KNOWN_OPTIONS = {"DATABASE", "MAX_ATTEMPTS", "BACKOFF", "QUEUE_LIMITS", "LISTEN_DATABASE"}
# Defaults for every task of the alias (Django's proposal #142 names). The proposal puts
# them beside QUEUES; taskmill reads them there too, so both spellings keep working.
RETRY_DEFAULTS = ("MAX_ATTEMPTS", "BACKOFF")
MAX_QUEUE_NAME_LENGTH = Run._meta.get_field("queue_name").max_length


def _max_attempts_option(name: str, value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ImproperlyConfigured(
            f"{name} must be a whole number >= 1 (attempts in all, the first included), "
            f"not {value!r}."
        )
    return value


def _backoff_option(name: str, value: Any) -> Any:
    """The ``BACKOFF`` option as a callable in the (exception, task_result) form."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{name} names {value!r}, which cannot be imported: {exc}. (A backoff defined "
                "in a module that defines tasks cannot be imported while the backend is set "
                "up: put it in a module of its own.)"
            ) from exc
    try:
        form = read_form(value)
    except TypeError as exc:
        raise ImproperlyConfigured(f"{name} must be a callable {NEW_FORM}: {exc}.") from None
    if form is False:
        raise ImproperlyConfigured(
            f"{name}: {describe(value)} takes (failures, exception), taskmill's deprecated "
            f"form; BACKOFF takes the form Django proposes, {NEW_FORM} ({PROPOSAL_URL})."
        )
    return value


class DatabaseBackend(BaseTaskBackend):
    """Stores runs in a table of the project's database; ``manage.py taskmill worker`` runs them.

    OPTIONS:
        DATABASE: the database alias holding the runs (default ``"default"``).
        MAX_ATTEMPTS: attempts for every task that sets no ``max_attempts`` (default 1).
        BACKOFF: ``backoff(exception, task_result) -> seconds | None`` (or its dotted path)
            for every task that sets no backoff of its own.
        QUEUE_LIMITS: ``{queue: {"concurrency_limit": N, "rate_limit": "100/m"}}``, limits
            shared by every run of a queue (taskmill.limits.queues; docs/limits.md).
        LISTEN_DATABASE: a ``DATABASES`` alias reaching PostgreSQL directly, for the
            workers' LISTEN when DATABASE goes through a pooler in transaction mode (found
            by the workers themselves otherwise; docs/configuration.md).
    """

    task_class = Task
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    # TaskResult.metadata, .using(metadata=...), context.metadata and save_metadata()
    # (Django's proposal new-features#141, by its names).
    supports_metadata = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.database: str = self.options.get("DATABASE", "default")
        # Where PostgreSQL workers LISTEN for wake-ups, when DATABASE goes through a pooler
        # in transaction mode (None: found by the worker, db/listen_target.py).
        self.listen_database: str | None = self.options.get("LISTEN_DATABASE")
        where = f"TASKS[{alias!r}]"
        found: dict[str, tuple[str, Any]] = {}  # key -> (where it is set, its value)
        for key in RETRY_DEFAULTS:
            if key in params and key in self.options and params[key] != self.options[key]:
                raise ImproperlyConfigured(
                    f"{where} sets {key} twice, differently: beside QUEUES and in OPTIONS."
                )
            if key in self.options:
                found[key] = (f"{where} OPTIONS[{key!r}]", self.options[key])
            elif key in params:
                found[key] = (f"{where}[{key!r}]", params[key])
        self.default_max_attempts: int | None = _max_attempts_option(
            *found.get("MAX_ATTEMPTS", ("", None))
        )
        self.default_backoff: Any = _backoff_option(*found.get("BACKOFF", ("", None)))
        self.queue_limits = parse_queue_limits(where, self.options.get("QUEUE_LIMITS"))

    # -- validation ---------------------------------------------------------------------

    def validate_task(self, task: Any) -> None:
        # Django documents run_after as "a datetime or timedelta" but its base validation
        # rejects timedeltas; taskmill accepts them and resolves them at enqueue time.
        if isinstance(task.run_after, timedelta):
            task = SimpleNamespace(
                func=task.func,
                priority=task.priority,
                queue_name=task.queue_name,
                takes_context=task.takes_context,
                run_after=None,
            )
        elif task.run_after is not None and not isinstance(task.run_after, datetime):
            raise InvalidTask(
                f"run_after must be an aware datetime or a timedelta, not {task.run_after!r}."
            )
        super().validate_task(task)
        problem = text_problem("the queue name", task.queue_name)
        if problem:
            raise InvalidTask(f"Queue name {task.queue_name!r}: {problem}.")
        if len(task.queue_name) > MAX_QUEUE_NAME_LENGTH:
            raise InvalidTask(
                f"Queue name {task.queue_name!r} is longer than {MAX_QUEUE_NAME_LENGTH} characters."
            )

    # -- enqueue ------------------------------------------------------------------------

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        return self._enqueue(task, [(args, kwargs)])[0]

    def enqueue_many(self, task: Task, calls: Iterable[Call]) -> list[TaskResult]:
        """Enqueue many calls of ``task`` in one transaction, with as few INSERTs as possible."""
        return self._enqueue(task, list(calls))

    def _enqueue(self, task: Task, calls: list[Call]) -> list[TaskResult]:
        self.validate_task(task)
        joining = batch_membership.current()
        if joining is not None:  # inside ``with batch:``: the runs are its members
            from .batches.members import enqueue_members

            return enqueue_members(self, task, calls, joining)
        return self.save_new_runs(task, self.new_runs(task, calls, now=timezone.now()))

    def save_new_runs(self, task: Task, runs: list[NewRun]) -> list[TaskResult]:
        """Insert the runs of an enqueue: unique and dependent ones one at a time, the
        others together (``save_runs``)."""
        if task.depends_on or task.unique or task.unique_key is not None:
            # One at a time: each may meet an existing unique run or settle its dependencies.
            return [self._save_guarded(task, run) for run in runs]
        return self.save_runs(task, runs)

    def new_run(
        self, task: Task, args: Any, kwargs: Any, *, now: datetime, **fields: Any
    ) -> NewRun:
        """An unsaved run of ``task``; ``fields`` sets further columns (the scheduler's)."""
        return self.new_runs(task, [(args, kwargs)], now=now, **fields)[0]

    def new_runs(
        self, task: Task, calls: Sequence[Call], *, now: datetime, **fields: Any
    ) -> list[NewRun]:
        """Unsaved runs of ``task``, one per call. What does not depend on the call (the
        task's path, options and timing) is worked out once: a bulk enqueue makes
        thousands."""
        if clash := fields.keys() & NEW_RUN_COLUMN_SET:
            raise TypeError(f"new_runs() sets {', '.join(sorted(clash))} itself")
        run_after = task.run_after
        if isinstance(run_after, timedelta):
            run_after = now + run_after
        task_path = task.module_path
        options = task.stored_options()
        status = RunStatus.WAITING if task.depends_on else RunStatus.READY
        due = run_after is None or run_after <= now
        available_at = run_after or now
        backend, queue_name, priority = self.alias, task.queue_name, task.priority
        keyed = task.unique or task.unique_key is not None
        limited = limit_keys.uses_keys(task)
        # Checked again here: the dict .using() kept is reachable (task.metadata) and may
        # have been changed since. As text, so that each run gets a dict of its own.
        metadata = checked_metadata(task_path, task.metadata)
        metadata_text = None if metadata is None else json.dumps(metadata)
        runs = []
        for args, kwargs in calls:
            args, kwargs = normalize_arguments(task_path, args, kwargs)
            extra = dict(fields)
            if metadata_text is not None:
                extra["metadata"] = json.loads(metadata_text)
            if limited:
                extra.update(limit_keys.run_keys(task, args, kwargs))
            runs.append(
                NewRun(
                    task_path=task_path,
                    backend=backend,
                    queue_name=queue_name,
                    priority=priority,
                    args=args,
                    kwargs=kwargs,
                    enqueued_at=now,
                    run_after=run_after,
                    available_at=available_at,
                    due=due,
                    status=status,
                    unique_key=task.unique_key_for(args, kwargs) if keyed else None,
                    # One dict per run: nothing may see a change made through another.
                    options=None if options is None else dict(options),
                    extra=extra,
                )
            )
        return runs

    def save_runs(self, task: Task, runs: list[NewRun]) -> list[TaskResult]:
        """Insert runs of one task, wake workers, send ``task_enqueued``; return the results.

        Inside the caller's transaction when there is one: the wake-up is delivered, and the
        runs become visible, when it commits.
        """
        if not runs:
            return []
        now = timezone.now()
        # Deferred and waiting runs wake nobody: idle workers poll for them.
        queues = {
            run.queue_name
            for run in runs
            if run.available_at <= now and run.status == RunStatus.READY
        }
        with hooks.enqueueing(task, runs):  # taskmill.hooks: integrations (tracing)
            get_engine(self.database).insert_runs(runs, queues)
        for queue_name in queues:
            wakeup.wake_local_after_commit(self.database, queue_name)
        results = results_of_new(task, runs)
        if enqueued_heard():
            for result in results:
                send(task_enqueued, type(self), result)
        return results

    def _save_guarded(self, task: Task, run: NewRun) -> TaskResult:
        """Insert one run that has a unique key or dependencies.

        The unique index decides: a duplicate insert fails inside a savepoint and the run
        already holding the key is returned instead. If that run finished in between (its
        key is free again), insert once more.
        """
        for _ in range(10):
            try:
                with transaction.atomic(using=self.database):
                    if task.depends_on:
                        lock_dependencies(self.database, task.depends_on)
                    result = self.save_runs(task, [run])[0]
                    if task.depends_on:
                        status = settle_new_dependent(self.database, run.pk, task.depends_on)
                        if status != RunStatus.WAITING:
                            result = self.get_result(str(run.pk))
                    return result
            except IntegrityError:
                if run.unique_key is None:
                    raise
                existing = (
                    Run.objects.using(self.database)
                    .filter(
                        task_path=run.task_path,
                        unique_key=run.unique_key,
                        status__in=ACTIVE_STATUSES,
                    )
                    .first()
                )
                if existing is not None:
                    return result_of(registry.resolve(existing.task_path), existing)
                run.pk = None
        raise IntegrityError(f"Could not enqueue unique run {run.unique_key!r} of {run.task_path}")

    # -- results ------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        try:
            run_id = int(result_id)
        except (TypeError, ValueError):
            raise result_error(TaskResultDoesNotExist)(result_id) from None
        try:
            run = Run.objects.using(self.database).get(pk=run_id, backend=self.alias)
        except Run.DoesNotExist:
            raise result_error(TaskResultDoesNotExist)(result_id) from None
        # A run whose task is gone from the code is still a result: its task says why.
        return result_of(task_of_run(run.task_path, run.backend), run)

    # -- system checks ------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        if _made_by_backport_registry(self):
            # The backport's own check (django_tasks in INSTALLED_APPS beside Django 6.0+)
            # runs each backend its registry made from TASKS; Django's check runs the twin
            # its registry made from the same settings. Said once, by Django's.
            return []
        messages: list[checks.CheckMessage] = []
        where = f"TASKS[{self.alias!r}]"
        if not apps.is_installed("taskmill"):
            messages.append(
                checks.Error(
                    f"{where} uses taskmill's DatabaseBackend but 'taskmill' is not in "
                    "INSTALLED_APPS.",
                    hint="Add 'taskmill' to INSTALLED_APPS and run migrate.",
                    id="taskmill.E001",
                )
            )
        if self.database not in settings.DATABASES:
            messages.append(
                checks.Error(
                    f"{where} OPTIONS['DATABASE'] names {self.database!r}, which is not in "
                    "DATABASES.",
                    id="taskmill.E002",
                )
            )
            return messages
        listen = self.listen_database
        if listen is not None and listen not in settings.DATABASES:
            messages.append(
                checks.Error(
                    f"{where} OPTIONS['LISTEN_DATABASE'] names {listen!r}, which is not in "
                    "DATABASES.",
                    hint="A DATABASES alias that reaches PostgreSQL directly, not through a "
                    "pooler in transaction mode: workers LISTEN through it.",
                    id="taskmill.E009",
                )
            )
        unknown = set(self.options) - KNOWN_OPTIONS
        if unknown:
            messages.append(
                checks.Warning(
                    f"{where} has unknown OPTIONS: {', '.join(sorted(unknown))}.",
                    hint=f"Known options: {', '.join(sorted(KNOWN_OPTIONS))}.",
                    id="taskmill.W001",
                )
            )
        for queue_name in sorted(self.queues):
            if len(queue_name) > MAX_QUEUE_NAME_LENGTH:
                messages.append(
                    checks.Error(
                        f"{where} queue name {queue_name!r} is longer than "
                        f"{MAX_QUEUE_NAME_LENGTH} characters.",
                        id="taskmill.E003",
                    )
                )
        vendor = unsupported_vendor(self.database)
        if vendor is not None:
            messages.append(
                checks.Error(
                    f"{where} stores runs on {vendor!r}; taskmill supports "
                    "PostgreSQL, MySQL 8 / MariaDB 10.6+ and SQLite.",
                    id="taskmill.E004",
                )
            )
        # Version checks need a connection: only when the caller asks for database checks.
        elif self.database in (kwargs.get("databases") or ()):
            messages.extend(get_engine(self.database).check_database(where))
        return messages


def _made_by_backport_registry(backend: object) -> bool:
    """Whether ``backend`` is an instance the backport's registry made, on a Django with its
    own (``django_tasks.task_backends`` reads ``TASKS`` too, and makes its own instances)."""
    backport = imported_backport()
    return backport is not None and any(
        made is backend for made in backport.task_backends.all(initialized_only=True)
    )


def stores_runs_in(backend: object, database: str) -> TypeGuard[DatabaseBackend]:
    """Whether ``backend`` is taskmill's and keeps its runs in ``database``: only then may
    the scheduler write its runs in its own transaction, and the control room count them."""
    return isinstance(backend, DatabaseBackend) and backend.database == database
