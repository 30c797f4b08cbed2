"""taskmill's Task: Django's Task plus what its API lacks, registered for the worker.

The options (``max_attempts``, ``retry_on``, ``backoff``, ``timeout``, ``unique``,
``on_success``/``on_failure``, ``atomic``, ``result_ttl``, ``retry_on_database_errors``,
``max_snoozes``, ``aliases``) are dataclass fields, so ``@taskmill.task(...)`` and, on Django 6.1,
``@django.tasks.task(...)`` (which forwards extra keywords to the backend's ``task_class``)
both accept them. ``.using()`` takes the per-call ones: ``max_attempts``, ``timeout``,
``result_ttl``, ``retry_on_database_errors``, ``max_snoozes``, ``unique_key``,
``depends_on``, ``on_dependency_failure`` and ``metadata``.

Names from Django's own proposals keep their proposed meaning, so that code written for
taskmill keeps working when Django lands them: ``max_attempts`` and ``backoff(exception,
task_result)`` (django/new-features#142; taskmill's older ``backoff(failures, exception)``
still works, deprecated, see ``backoff.py``), ``enqueue_on_commit()`` and
``aenqueue_on_commit()`` (django/new-features#161), ``.using(metadata={...})``
(django/new-features#141; the context's side is in worker/metadata.py).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import DEFAULT_DB_ALIAS, transaction

from . import registry, result_ttl
from .backoff import NEW_FORM, takes_result
from .compat import BaseTask, InvalidTask, TaskResult, TaskResultMismatch, result_error
from .conf import setting
from .exceptions import InvalidTaskArguments
from .limits import keys as limit_keys
from .results import UnregisteredTask
from .serialization import normalize_arguments, text_problem, to_json_value
from .status import RunStatus

# One call of a task for a bulk enqueue: (args, kwargs).
Call = tuple[Sequence[Any], Mapping[str, Any]]

# Options a single call may change with .using(); they are stored on the run when they
# differ from the task's own. The others (callables, callbacks, atomic) belong to the task.
PER_CALL_OPTIONS = (
    "max_attempts",
    "timeout",
    "result_ttl",
    "retry_on_database_errors",
    "max_snoozes",
    "unique_key",
    "depends_on",
    "on_dependency_failure",
    "metadata",
)
STORED_OPTIONS = (
    "max_attempts",
    "timeout",
    "result_ttl",
    "retry_on_database_errors",
    "max_snoozes",
    "on_dependency_failure",
)
# What a run with depends_on does when one of them fails for good or is cancelled: it is
# cancelled too ("cancel"), or it runs once they have all ended, whatever they did ("run": a
# pipeline's "finally" step).
DEPENDENCY_FAILURE_CANCELS = "cancel"
DEPENDENCY_FAILURE_RUNS = "run"
ON_DEPENDENCY_FAILURE = (DEPENDENCY_FAILURE_CANCELS, DEPENDENCY_FAILURE_RUNS)
MAX_UNIQUE_KEY_LENGTH = 200
# How often a run may ``raise taskmill.Snooze(...)`` unless its task says otherwise: enough
# for any honest "not yet", and a bound for a task that would snooze for ever.
DEFAULT_MAX_SNOOZES = 100

# (exception, task_result) -> seconds or None, as Django's proposal #142 spells it; or,
# deprecated, taskmill's first form (failures, exception) -> seconds or None.
Backoff = (
    Callable[[BaseException, TaskResult], float | int | timedelta | None]
    | Callable[[int, BaseException], float | int | timedelta | None]
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Task(BaseTask):
    """The ``task_class`` of taskmill's backend: ``@task`` on a taskmill backend makes these."""

    # Attempts in all, the first included, before a failure is final (Django's proposal
    # #142 name). A lost worker does not use one up (see docs/runs.md). None: the backend's
    # OPTIONS["MAX_ATTEMPTS"], else 1.
    max_attempts: int | None = None
    # Exceptions that may retry; any other fails the run at once.
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    # (exception, task_result) -> seconds to wait, or None not to retry (proposal #142;
    # (failures, exception) still works, deprecated). Default: the backend's
    # OPTIONS["BACKOFF"] if the task sets none of these three, else exponential with full
    # jitter, base and cap from the fields below or the settings.
    backoff: Backoff | None = None
    backoff_base: float | None = None
    backoff_cap: float | None = None
    # A hard limit in seconds: sync tasks run in a child process killed at the limit,
    # async ones are cancelled on the event loop.
    timeout: float | None = None
    # At most one READY/WAITING/RUNNING run per key; the key is the task and its arguments,
    # or unique_key, given per call.
    unique: bool = False
    unique_key: str | None = None
    # Run ids this call waits for (per call, .using(depends_on=[result, ...])), in the order
    # given (context.dependency_results keeps it).
    depends_on: tuple[int, ...] = ()
    # When one of them fails for good or is cancelled: "cancel" this run too, or "run" it
    # once they have all ended (ON_DEPENDENCY_FAILURE).
    on_dependency_failure: str = DEPENDENCY_FAILURE_CANCELS
    # Tasks (or their import paths) enqueued with the finished result's id, in the same
    # transaction that records the outcome.
    on_success: Any = None
    on_failure: Any = None
    # The body and the recording of its success commit in one transaction.
    atomic: bool = False
    # How long a finished run is kept (seconds or a timedelta), or a dict of them by
    # outcome (keys SUCCESSFUL, FAILED and CANCELLED, RunStatus names; a missing outcome is
    # kept); None: the setting. See taskmill/result_ttl.py.
    result_ttl: float | timedelta | Mapping[str, Any] | None = None
    # A transient database error raised by the body (the connection lost, a failover, a
    # deadlock) sends the run again like a lost worker's, using no attempt of max_attempts
    # (see docs/runs.md). False: such an error is the task's failure like any other.
    retry_on_database_errors: bool = True
    # How many times a run may end an attempt with ``raise taskmill.Snooze(delay)`` (which
    # uses no attempt of max_attempts); the snooze past it fails the run (TooManySnoozes).
    max_snoozes: int = DEFAULT_MAX_SNOOZES
    # Flow control, held by the database across every worker (taskmill.limits,
    # docs/limits.md): at most concurrency_limit runs RUNNING at once, per concurrency_key
    # when given; at most rate_limit starts ("100/m" or Rate) in any window, per rate_key;
    # runs claimed round-robin over fair_key within their queue and priority. A key is the
    # name of a keyword argument or a callable (args, kwargs) -> str.
    concurrency_limit: int | None = None
    concurrency_key: Any = None
    rate_limit: Any = None
    rate_key: Any = None
    fair_key: Any = None
    # Keys given per call, .using(concurrency_key="acct-7"): (option, key) pairs.
    call_keys: tuple[tuple[str, str], ...] = ()
    # The run's metadata to start with (.using(metadata={...}), Django's proposal #141):
    # a JSON object, stored in the run's own column; the task reads and adds to it through
    # its context. Not hashed: a dict cannot be, and the task's identity is elsewhere.
    metadata: dict[str, Any] | None = field(default=None, hash=False)
    # The import paths this task had before a rename: runs and schedules stored under one
    # of them run this task (taskmill.registry).
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._normalize()
        # Explicit base call: zero-argument super() breaks in slotted dataclasses.
        BaseTask.__post_init__(self)
        registry.register(self)

    def _normalize(self) -> None:
        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.retry_on, type):
            set_("retry_on", (self.retry_on,))
        else:
            set_("retry_on", tuple(self.retry_on))
        for exc_type in self.retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise InvalidTask(f"retry_on must hold exception classes, not {exc_type!r}.")
        if self.max_attempts is not None and (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise InvalidTask(f"max_attempts must be an integer >= 1, not {self.max_attempts!r}.")
        if (
            not isinstance(self.max_snoozes, int)
            or isinstance(self.max_snoozes, bool)
            or self.max_snoozes < 0
        ):
            raise InvalidTask(f"max_snoozes must be an integer >= 0, not {self.max_snoozes!r}.")
        if self.backoff is not None:
            try:
                # Read once, here: the deprecated form warns where the task is defined.
                takes_result(self.backoff)
            except TypeError as exc:
                raise InvalidTask(f"backoff must be a callable {NEW_FORM}: {exc}.") from None
        if not isinstance(self.retry_on_database_errors, bool):
            raise InvalidTask(
                "retry_on_database_errors must be True or False, "
                f"not {self.retry_on_database_errors!r}."
            )
        for name in ("backoff_base", "backoff_cap", "timeout"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, timedelta):
                    value = value.total_seconds()
                # NaN and infinity too: the options are stored as JSON, which has neither.
                if not _finite_number(value) or value <= 0:
                    raise InvalidTask(
                        f"{name} must be a positive number of seconds, not {value!r}."
                    )
                set_(name, float(value))
        try:
            set_("result_ttl", result_ttl.parse(self.result_ttl))
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None
        set_("aliases", _checked_aliases(self.aliases, self.module_path))
        if self.unique_key is not None:
            if not isinstance(self.unique_key, str) or not self.unique_key:
                raise InvalidTask(
                    f"unique_key must be a non-empty string, not {self.unique_key!r}."
                )
            problem = text_problem("unique_key", self.unique_key)
            if problem:
                raise InvalidTask(f"{problem}.")
            if len(self.unique_key) > MAX_UNIQUE_KEY_LENGTH:
                raise InvalidTask(f"unique_key is longer than {MAX_UNIQUE_KEY_LENGTH} characters.")
        set_("depends_on", tuple(_run_id(item) for item in self.depends_on))
        if self.on_dependency_failure not in ON_DEPENDENCY_FAILURE:
            raise InvalidTask(
                'on_dependency_failure must be "cancel" (the run is cancelled when a '
                'dependency fails) or "run" (it runs once every dependency has ended), '
                f"not {self.on_dependency_failure!r}."
            )
        if self.atomic and inspect.iscoroutinefunction(self.func):
            # The worker runs only sync bodies inside the run's transaction: an async one
            # would silently run outside it.
            raise InvalidTask(
                "atomic=True needs a sync task: an async task's database calls cannot run "
                "in the transaction that records its success."
            )
        set_("metadata", checked_metadata(self.module_path, self.metadata))
        set_("rate_limit", limit_keys.check_options(self)["rate_limit"])
        for name in ("on_success", "on_failure"):
            callback = getattr(self, name)
            if callback is None:
                continue
            if isinstance(callback, BaseTask):
                set_(name, callback.module_path)
            elif not isinstance(callback, str) or "." not in callback:
                raise InvalidTask(f"{name} must be a task or its import path, not {callback!r}.")

    # -- per-call options ----------------------------------------------------------------

    def using(  # type: ignore[override]
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: Any = None,
        backend: str | None = None,
        **options: Any,
    ) -> Task:
        """A copy with other defaults; besides Django's, the per-call options
        ``max_attempts``, ``timeout``, ``result_ttl``, ``retry_on_database_errors``,
        ``max_snoozes``, ``unique_key``, ``depends_on``, ``on_dependency_failure`` and
        ``metadata``; and the keys of this call's limits, ``concurrency_key``, ``rate_key`` and
        ``fair_key`` (the key
        itself, a string)."""
        given = limit_keys.given_per_call(options)
        if given:
            options["call_keys"] = (*(p for p in self.call_keys if p[0] not in dict(given)), *given)
        unknown = set(options) - set(PER_CALL_OPTIONS) - {"call_keys"}
        if unknown:
            raise TypeError(
                f"using() got unexpected option(s) {', '.join(sorted(unknown))}; per call, "
                f"taskmill takes {', '.join((*PER_CALL_OPTIONS, *limit_keys.KEY_OPTIONS))}."
            )
        task = BaseTask.using(
            self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend
        )
        return replace(task, **options) if options else task

    def stored_options(self) -> dict[str, Any] | None:
        """The per-call options that differ from the registered task's, for the run row."""
        try:
            original = registry.resolve(self.module_path)
        except InvalidTask:
            original = None
        if original is self:
            return None
        changed = {
            name: getattr(self, name)
            for name in STORED_OPTIONS
            if original is None or getattr(self, name) != getattr(original, name)
        }
        if "result_ttl" in changed:  # a TTL per outcome is stored as its JSON
            changed["result_ttl"] = result_ttl.as_stored(changed["result_ttl"])
        if changed.get("max_attempts", 0) is None:
            # None is "not set here": the task's, else the backend's, applies.
            del changed["max_attempts"]
        return changed or None

    def unique_key_for(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """The run's unique key: ``unique_key`` if given, else a digest of the arguments."""
        if self.unique_key is not None:
            return self.unique_key
        if not self.unique:
            return None
        canonical = json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
        return "args:" + hashlib.sha256(canonical.encode()).hexdigest()

    # -- calls: ``self`` positional-only ----------------------------------------------------
    # Django's own methods take ``self`` by name too, so a keyword argument called "self"
    # (a task taking **fields, given a user's dict) failed with "got multiple values".

    def enqueue(self, /, *args: Any, **kwargs: Any) -> TaskResult:
        return self.get_backend().enqueue(self, args, kwargs)

    async def aenqueue(self, /, *args: Any, **kwargs: Any) -> TaskResult:
        return await self.get_backend().aenqueue(self, args, kwargs)

    def enqueue_on_commit(self, /, *args: Any, **kwargs: Any) -> None:
        """Enqueue when the transaction open on the backend's database commits; at once
        when none is open; never if it rolls back (Django's proposal #161).

        Returns None, as proposed: no run exists before the commit. Every argument goes to
        the task (no ``using=`` or ``robust=``). The task and its arguments are checked,
        and the arguments copied, now: a mistake raises here, not at the commit.
        ``enqueue()`` already joins the caller's transaction on taskmill's backend; this is
        for code that must also run on other backends.
        """
        backend = self.get_backend()
        backend.validate_task(self)
        if hasattr(backend, "new_runs"):  # taskmill's backend: its JSON rules, checked now
            args, kwargs = normalize_arguments(self.module_path, args, kwargs)
        database = getattr(backend, "database", DEFAULT_DB_ALIAS)
        transaction.on_commit(lambda: self.enqueue(*args, **kwargs), using=database)

    async def aenqueue_on_commit(self, /, *args: Any, **kwargs: Any) -> None:
        """``enqueue_on_commit`` from async code: a transaction belongs to a thread's
        connection, so it is registered on the thread Django runs sync code on (the one an
        enclosing ``atomic()`` runs in, under ``async_to_sync``)."""
        await sync_to_async(self.enqueue_on_commit, thread_sensitive=True)(*args, **kwargs)

    def get_result(self, /, result_id: str) -> TaskResult:
        return self._own(self.get_backend().get_result(result_id))

    async def aget_result(self, /, result_id: str) -> TaskResult:
        return self._own(await self.get_backend().aget_result(result_id))

    def _own(self, result: TaskResult) -> TaskResult:
        """Django's check that the result is this task's, also for a run whose task is not
        registered here: that one is another task's too, whatever its path."""
        task = result.task
        if isinstance(task, UnregisteredTask):
            raise result_error(TaskResultMismatch)(
                f"Task does not match (received {task.module_path!r}, which names no task "
                "registered in this process)"
            )
        if task.func != self.func:
            raise result_error(TaskResultMismatch)(
                f"Task does not match (received {task.module_path!r})"
            )
        return result

    def call(self, /, *args: Any, **kwargs: Any) -> Any:
        if inspect.iscoroutinefunction(self.func):
            return async_to_sync(self.func)(*args, **kwargs)
        return self.func(*args, **kwargs)

    # -- bulk enqueue ----------------------------------------------------------------------

    def enqueue_many(self, calls: Iterable[Call]) -> list[TaskResult]:
        """Enqueue many calls of this task with one INSERT; ``calls`` holds (args, kwargs) pairs."""
        backend = self.get_backend()
        if not hasattr(backend, "enqueue_many"):
            raise TypeError(
                f"Backend {self.backend!r} ({type(backend).__qualname__}) has no bulk enqueue; "
                "enqueue_many needs taskmill's DatabaseBackend."
            )
        return backend.enqueue_many(self, calls)


def checked_metadata(task_path: str, metadata: Any) -> dict[str, Any] | None:
    """``metadata`` as plain JSON (a copy), or a clear ``InvalidTaskArguments``; None for
    none. Checked when given and again at enqueue: the caller's dict may change between."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidTaskArguments(
            f"Cannot enqueue {task_path!r}: metadata must be a dict (a JSON object), "
            f"not {type(metadata).__name__} {metadata!r:.80}."
        )
    return to_json_value(dict(metadata), "metadata", f"Cannot enqueue {task_path!r}") or None


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _run_id(item: Any) -> int:
    """A run id from a TaskResult, its id string, or an int."""
    value = getattr(item, "id", item)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidTask(f"depends_on takes task results or their ids, not {item!r}.") from None


def _checked_aliases(aliases: Any, path: str) -> tuple[str, ...]:
    """``aliases`` as a tuple of import paths, each checked: a dotted path of names, not
    the task's own."""
    if isinstance(aliases, str):  # a single path would be read letter by letter
        raise InvalidTask(f"aliases takes a list of import paths, not the string {aliases!r}.")
    try:
        given = tuple(aliases)
    except TypeError:
        raise InvalidTask(f"aliases takes a list of import paths, not {aliases!r}.") from None
    for alias in given:
        names = alias.split(".") if isinstance(alias, str) else []
        if len(names) < 2 or not all(name.isidentifier() for name in names):
            raise InvalidTask(
                f"An alias is the import path a task had before (module.function), not {alias!r}."
            )
        if alias == path:
            raise InvalidTask(f"Task {path!r} cannot be its own alias.")
    return tuple(dict.fromkeys(given))


def effective_option(task: Task, stored: Mapping[str, Any] | None, name: str) -> Any:
    """An option for one run: the per-call value stored on the run, else the task's."""
    if stored and name in stored:
        return stored[name]
    return getattr(task, name, None)


def expiry_for(
    task: Task | None, stored: Mapping[str, Any] | None, finished_at: datetime, status: str
) -> datetime | None:
    """When a run that ended ``status`` at ``finished_at`` may be pruned: its result_ttl (per
    call, else the task's), else TASKMILL_RESULT_TTL, for that outcome; None keeps it.

    A retry (READY) is given the expiry of CANCELLED: the finish writes a retry's expiry
    only when it turns it into a cancellation (a stop was asked for meanwhile)."""
    if status == RunStatus.READY:
        status = RunStatus.CANCELLED
    ttl = effective_option(task, stored, "result_ttl") if task is not None else None
    if ttl is None:
        ttl = result_ttl.setting_ttl(setting(result_ttl.SETTING))
    seconds = result_ttl.seconds_for(ttl, status)
    return None if seconds is None else finished_at + timedelta(seconds=seconds)


def task(
    function: Callable[..., Any] | None = None,
    *,
    priority: int | None = None,
    queue_name: str | None = None,
    backend: str | None = None,
    takes_context: bool = False,
    **options: Any,
) -> Any:
    """``@taskmill.task``: Django's ``@task`` with taskmill's options; always makes
    taskmill's ``Task`` (on Django 5.2 too, where the backport's decorator is the other way).
    """
    from .compat import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_PRIORITY, DEFAULT_TASK_QUEUE_NAME

    if "run_after" in options:
        raise TypeError("run_after is set per call: use .using(run_after=...).")

    def wrapper(func: Callable[..., Any]) -> Task:
        return Task(
            func=func,
            priority=DEFAULT_TASK_PRIORITY if priority is None else priority,
            queue_name=queue_name or DEFAULT_TASK_QUEUE_NAME,
            backend=backend or DEFAULT_TASK_BACKEND_ALIAS,
            takes_context=takes_context,
            # Given: Django 6.0's Task has no default for it (6.1 and the backport do).
            run_after=None,
            **options,
        )

    return wrapper(function) if function is not None else wrapper
