"""Running one claimed run: resolve its task, send the signals, call it, decide the outcome.

Where the call happens depends on the task: a task thread (sync, no timeout), the event
loop (async; a timeout cancels it), or a child process (sync with a timeout: the only way to
stop a blocking call is to kill the process running it). The outcome is decided here, the
same way for all three: success, a retry after a backoff, or a final failure.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, close_old_connections, connections, transaction
from django.utils import timezone

from .. import registry
from ..compat import (
    BaseTask,
    InvalidTask,
    TaskResult,
    TaskResultStatus,
    task_backends,
    task_started,
)
from ..compat import TaskContext as BaseTaskContext
from ..db import ClaimedRun, Outcome, get_engine
from ..db.errors import is_transient
from ..db.records import Landed
from ..exceptions import (
    CorruptRun,
    RunCancelled,
    TaskTimeout,
    task_failures,
)
from ..results import result_of
from ..retries import retry_delay
from ..serialization import to_json_value
from ..signalling import started_heard
from ..tasks import effective_option, expiry_for
from .interruptions import (
    close_async_connections,
    database_interruption,
    retries_on_database_errors,
)

logger = logging.getLogger("taskmill.worker")

# An atomic attempt's transaction is tried this often when the database, not the task, fails
# it (a deadlock, a serialization failure, a lock wait timeout, a dropped connection).
ATOMIC_TRIES = 3


# When this thread last closed its broken or expired connections (after its last task).
_tidied = threading.local()
# A thread idle longer than this tidies its connections again before the next task: one
# may have passed CONN_MAX_AGE meanwhile. Tasks in quick succession rely on the tidying
# done after the previous one (Django's request cycle does both; it costs a few us each).
TIDY_AFTER_IDLE = 1.0


def _tidy_connections_after_idle() -> None:
    if time.monotonic() - getattr(_tidied, "at", -TIDY_AFTER_IDLE) >= TIDY_AFTER_IDLE:
        close_old_connections()


class TaskCrashed(Exception):
    """The child process running the attempt died by itself (a crash, out of memory)."""


class RaisedInChild(Exception):
    """Stands, in the worker, for what a task raised in its child process: its message is
    the child's traceback (the exception itself cannot cross the process boundary: JSON
    only). ``task_finished`` receivers, Django's log line among them, get this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskContext(BaseTaskContext):
    """Django's context, plus what a long task needs to cooperate with a stop request."""

    stop_event: threading.Event | None = None

    @property
    def stop_requested(self) -> bool:
        """True once someone asked to stop this run: return or raise soon."""
        return self.stop_event is not None and self.stop_event.is_set()


@dataclass(slots=True)
class Completed:
    """One finished attempt on its way to the database."""

    run: ClaimedRun
    task: BaseTask | None  # None when the run named no registered task
    outcome: Outcome
    duration: float  # seconds spent in the task itself
    # Set when the attempt wrote its own outcome (atomic tasks): the flush skips it.
    landed: Landed | None = None
    recorded: bool = False
    # "ExceptionClass: message" when the task raised: what the worker's log says it failed
    # of (the traceback is in the outcome's last error).
    failure: str | None = None
    # What the attempt raised, for the task_finished receivers (Django's logs it with its
    # traceback); dropped once they have had it.
    exception: BaseException | None = None


def error_entry(exc: BaseException) -> dict[str, str]:
    exc_type = type(exc)
    return {
        "exception_class_path": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def failure_summary(exc: BaseException) -> str:
    """``ExceptionClass: first line of its message``: one log line's worth."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__qualname__
    if not lines:
        return name
    return f"{name}: {lines[0]}" + (" [...]" if len(lines) > 1 else "")


def signal_sender(run: ClaimedRun) -> type:
    try:
        return type(task_backends[run.backend])
    except Exception:  # the alias was removed from settings since the run was enqueued
        from ..backend import DatabaseBackend

        return DatabaseBackend


class Attempt:
    """One attempt of one run: ``run_sync`` (on a thread, or in a child process when the
    task has a timeout and a process pool is given) or ``run_async``."""

    def __init__(
        self,
        run: ClaimedRun,
        *,
        database: str = "default",
        stop_event: threading.Event | None = None,
        pool: Any = None,
    ) -> None:
        self.run = run
        self.database = database
        self.stop_event = stop_event
        self.pool = pool
        self.task: BaseTask | None = None
        self._result: TaskResult | None = None
        # When the body began: the run's started_at.
        self.started_at: datetime | None = None

    # -- preparing and deciding -----------------------------------------------------------

    def prepare(self) -> Completed | None:
        """Resolve the task; a run naming no registered task, or whose row is corrupt
        (``ClaimedRun.problem``), fails here and runs nothing."""
        try:
            if self.run.problem is not None:
                raise CorruptRun(f"Run {self.run.id} refused: {self.run.problem}.")
            self.task = registry.resolve(self.run.task_path)
        except InvalidTask as exc:
            # Logged by the worker with every failed attempt (attempt_log), at ERROR: final.
            return self.failed(exc, 0.0)
        return None

    def mark_started(self) -> None:
        """The attempt's body begins now. A run may have waited in the worker's backlog
        since its claim: the claim's time is not its start."""
        if self.started_at is not None:
            return  # the worker marked it before the task_started signal
        self.started_at = timezone.now()
        self.run.started_at = self.run.last_attempted_at = self.started_at
        self._result = None  # a result built before holds the claim's time

    def ended_at(self, duration: float) -> datetime:
        if self.started_at is None:  # nothing ran: it ends now
            return timezone.now()
        return self.started_at + timedelta(seconds=duration)

    def duration(self) -> float:
        """Seconds since the body began (none before it did).

        On the wall clock, as the start: the finish is the start plus this duration, so
        ``finished_at - started_at`` is exactly the duration that the admin, the dashboard
        and the rollups show, and a run's start never falls before the finish of the run
        the same slot ran before it. (Measured on the monotonic clock, the finish drifted
        from the wall clock: 0.2 ms over a 0.3 s body was seen here, enough to put it after
        the next run's start.) A step of the wall clock is clamped to no time."""
        if self.started_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.started_at).total_seconds())

    @property
    def result(self) -> TaskResult:
        """The run as a RUNNING ``TaskResult``: built only when something needs it (the
        task's context, a ``task_started`` receiver)."""
        if self._result is None:
            self._result = result_of(self.task, self.run, status=TaskResultStatus.RUNNING)
        return self._result

    def option(self, name: str) -> Any:
        return effective_option(self.task, self.run.options, name)

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        assert self.task is not None
        args = list(self.run.args)
        if self.task.takes_context:
            args.insert(0, TaskContext(task_result=self.result, stop_event=self.stop_event))
        return args, self.run.kwargs

    def stop_was_requested(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def succeeded(self, value: Any, duration: float) -> Completed:
        # None is what most tasks return: no check, and no message built for nothing.
        if value is not None:
            try:
                value = to_json_value(
                    value,
                    "the return value",
                    f"Task {self.run.task_path!r} returned what JSON cannot hold",
                    raises=TypeError,  # what Django's own backends record for it
                )
            except Exception as exc:  # the task ran, but its result cannot be stored
                return self.failed(exc, duration)
        now = self.ended_at(duration)
        outcome = Outcome(
            run_id=self.run.id,
            attempt=self.run.attempt,
            status=TaskResultStatus.SUCCESSFUL,
            finished_at=now,
            return_value=value,
            errors=self.run.errors,
            expires_at=expiry_for(self.task, self.run.options, now),
            started_at=self.started_at,
        )
        return Completed(self.run, self.task, outcome, duration)

    def failed(self, exc: BaseException, duration: float) -> Completed:
        if self.stop_was_requested() and not isinstance(exc, RunCancelled):
            exc = _chained(RunCancelled("stopped on request while running"), exc)
        error = error_entry(exc)
        now = self.ended_at(duration)
        interrupted = database_interruption(
            self.run, self.task, exc, error, now=now, started_at=self.started_at
        )
        if interrupted is not None:  # the database's fault: the run goes again, as if lost
            failure = failure_summary(exc)
            return Completed(
                self.run, self.task, interrupted, duration, failure=failure, exception=exc
            )
        errors = [*self.run.errors, error]
        delay = None
        if self.task is not None and isinstance(exc, Exception):
            delay = retry_delay(
                self.task,
                self.run.options,
                task_failures(errors),
                exc,
                backend=self.run.backend,
                task_result=lambda: self.result,
                errors=errors,
            )
        if delay is not None:
            status = "READY"
            available_at = now + timedelta(seconds=delay)
        else:
            status = "CANCELLED" if isinstance(exc, RunCancelled) else TaskResultStatus.FAILED
            available_at = None
        outcome = Outcome(
            run_id=self.run.id,
            attempt=self.run.attempt,
            status=status,
            finished_at=now,
            errors=errors,
            available_at=available_at,
            expires_at=expiry_for(self.task, self.run.options, now),
            started_at=self.started_at,
        )
        return Completed(
            self.run, self.task, outcome, duration, failure=failure_summary(exc), exception=exc
        )

    # -- sync -----------------------------------------------------------------------------

    def run_sync(self) -> Completed:
        refused = self.prepare()
        if refused:
            return refused
        self.mark_started()
        if started_heard():
            task_started.send(signal_sender(self.run), task_result=self.result)
        timeout = self.option("timeout")
        if timeout and self.pool is not None:
            return self.run_in_child(timeout)
        return self.call_here()

    def call_here(self) -> Completed:
        """Call the task on this thread (a task thread, or a child process's main thread)."""
        _tidy_connections_after_idle()
        self.mark_started()  # in a child process: its own start, not the worker's
        try:
            if getattr(self.task, "atomic", False):
                return self.call_atomic_retrying()
            args, kwargs = self.arguments()
            value = self.task.call(*args, **kwargs)
        except _ResultNotStorable as exc:
            return exc.completed
        except BaseException as exc:
            return self.failed(exc, self.duration())
        finally:
            close_old_connections()
            _tidied.at = time.monotonic()
        return self.succeeded(value, self.duration())

    def call_atomic_retrying(self) -> Completed:
        """``call_atomic``, again in a new transaction when the database failed the last one.

        Its rollback undid everything, so running the body again is safe; a task's own
        errors are not retried here (its retry settings decide).
        """
        for tries in range(1, ATOMIC_TRIES + 1):
            args, kwargs = self.arguments()  # afresh: the body may have changed them
            try:
                return self.call_atomic(args, kwargs, retry=tries > 1)
            except DatabaseError as exc:
                if not is_transient(exc) or not retries_on_database_errors(
                    self.task, self.run.options
                ):
                    raise
                connections[self.database].close_if_unusable_or_obsolete()
                if tries == ATOMIC_TRIES:  # the database kept failing it: a lost attempt
                    raise
                logger.warning(
                    "Run %s: the database failed its atomic transaction (%s); trying again",
                    self.run.id,
                    exc,
                )
                time.sleep(0.1 * 2**tries)  # let a deadlock's other party finish
        raise AssertionError("unreachable")

    def call_atomic(
        self, args: list[Any], kwargs: dict[str, Any], retry: bool = False
    ) -> Completed:
        """Body and success in one transaction, fenced by the attempt.

        The transaction first locks the run's row if it still holds this attempt; rescue
        (SKIP LOCKED) passes over it while we hold it. If the worker dies, the transaction
        rolls back and the rescued attempt starts clean: the body's rows exist once.

        On a ``retry``, the last try's commit may have gone through with its reply lost (the
        connection dropped): a row already SUCCESSFUL under this attempt is that commit,
        body and success together, and stands as this attempt's outcome.
        """
        from ..followups import Settling, settle
        from ..models import Run
        from .outcomes import ended_attempt

        engine = get_engine(self.database)
        with transaction.atomic(using=self.database):
            if not engine.lock_attempt(self.run.id, self.run.attempt):
                done = retry and (
                    Run.objects.using(self.database)
                    .filter(pk=self.run.id, attempt=self.run.attempt, status="SUCCESSFUL")
                    .values("return_value", "has_dependents")
                    .first()
                )
                if done:
                    completed = self.succeeded(done["return_value"], self.duration())
                    completed.landed = Landed(
                        self.run.id, self.run.attempt, "SUCCESSFUL", done["has_dependents"]
                    )
                    completed.recorded = True
                    return completed
                raise RunCancelled("the run was taken over before its atomic body started")
            value = self.task.call(*args, **kwargs)
            completed = self.succeeded(value, self.duration())
            if completed.outcome.status != TaskResultStatus.SUCCESSFUL:
                raise _ResultNotStorable(completed)
            landed = engine.finish([completed.outcome]).get(self.run.id)
            if landed is None:
                raise RunCancelled("the run was taken over while its atomic body ran")
            settle(
                self.database,
                [Settling(landed, self.task, ended_attempt(completed, landed.status))],
            )
            completed.landed = landed
            completed.recorded = True
        return completed

    def run_in_child(self, timeout: float) -> Completed:
        from .child_attempt import outcome_from_json, run_to_json
        from .processes import Killed

        payload = {"database": self.database, "run": run_to_json(self.run)}
        reply = self.pool.call(payload, timeout=timeout, stop=self.stop_event)
        duration = self.duration()
        if isinstance(reply, Killed):
            if reply.reason == "timeout":
                exc: BaseException = TaskTimeout(
                    f"Task {self.run.task_path} ran past its timeout of {timeout:g}s; its "
                    f"process (pid {reply.pid}) was killed."
                )
            elif reply.reason == "stopped":
                exc = RunCancelled(f"stopped on request; its process (pid {reply.pid}) was killed")
            else:
                exc = TaskCrashed(
                    f"The process running the task (pid {reply.pid}) died: {reply.detail}"
                )
            return self.failed(exc, duration)
        if "__child_error__" in reply:
            return self.failed(TaskCrashed(reply["__child_error__"]["traceback"]), duration)
        outcome = outcome_from_json(reply["outcome"])
        raised = reply.get("failure") and outcome.errors and outcome.errors[-1]["traceback"]
        completed = Completed(
            self.run,
            self.task,
            outcome,
            reply["duration"],
            failure=reply.get("failure"),
            exception=RaisedInChild(raised) if raised else None,
        )
        if reply.get("landed"):
            completed.landed = Landed(**reply["landed"])
            completed.recorded = True
        return completed

    # -- async ----------------------------------------------------------------------------

    async def run_async(self) -> Completed:
        refused = self.prepare()
        if refused:
            return refused
        self.mark_started()
        if started_heard():
            await task_started.asend(signal_sender(self.run), task_result=self.result)
        args, kwargs = self.arguments()
        timeout = self.option("timeout")
        limit = asyncio.timeout(timeout)
        try:
            async with limit:
                value = await self.task.func(*args, **kwargs)
        except TimeoutError as exc:
            if limit.expired():
                exc = _chained(
                    TaskTimeout(f"Task {self.run.task_path} ran past its timeout of {timeout:g}s"),
                    exc,
                )
            return self.failed(exc, self.duration())
        except asyncio.CancelledError as exc:
            if self.stop_was_requested():
                return self.failed(RunCancelled("stopped on request while running"), 0.0)
            if asyncio.current_task().cancelling():
                raise
            return self.failed(exc, self.duration())
        except BaseException as exc:
            await close_async_connections(exc)
            return self.failed(exc, self.duration())
        return self.succeeded(value, self.duration())


class _ResultNotStorable(Exception):
    """Raised inside an atomic attempt to roll back when its return value cannot be stored."""

    def __init__(self, completed: Completed) -> None:
        self.completed = completed


def _chained(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


__all__ = ["Attempt", "Completed", "TaskContext", "error_entry", "signal_sender"]
