"""One attempt of one run, as named steps: ``prepare`` (resolve the task; a corrupt run or
an unknown task is refused), ``mark_started`` (the body begins), then ``succeeded`` (the
return value becomes the outcome) or ``failed`` (the exception becomes what the task asked
for, a snooze or a cancel (snoozing.py), else a retry after a backoff, a lost attempt, or a
final outcome). Every runner (runners/: a task thread, a child
process, the event loop) takes an attempt through the same steps, so the outcome is decided
the same way wherever the body ran.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import middleware, registry
from ..compat import BaseTask, InvalidTask, TaskResult, TaskResultStatus, task_backends
from ..db import ClaimedRun, Outcome
from ..db.records import Landed
from ..exceptions import CorruptRun, RunCancelled, Snooze, task_failures
from ..logs import run_fields
from ..results import result_of
from ..retries import may_retry, retry_delay
from ..serialization import to_json_value
from ..status import RunStatus
from ..tasks import effective_option, expiry_for
from .execution import TaskContext
from .failures import chained, error_entry, failure_summary
from .interruptions import database_interruption
from .metadata import MetadataWriter
from .snoozing import own_verdict

logger = logging.getLogger("taskmill.worker")


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


def signal_sender(run: ClaimedRun) -> type:
    """The ``sender`` of a run's task signals: its backend's class."""
    try:
        return type(task_backends[run.backend])
    except Exception:  # the alias was removed from settings since the run was enqueued
        from ..backend import DatabaseBackend

        return DatabaseBackend


class Attempt:
    """One attempt of one run: its state (the task, when its body began) and its steps.
    Where the body runs is the runners' business (runners/)."""

    def __init__(
        self,
        run: ClaimedRun,
        *,
        database: str = "default",
        stop_event: threading.Event | None = None,
    ) -> None:
        self.run = run
        self.database = database
        self.stop_event = stop_event
        self.task: BaseTask | None = None
        self._result: TaskResult | None = None
        # Made with the task's context (takes_context=True): the metadata's writes.
        self.metadata_writer: MetadataWriter | None = None
        # When the body began: the run's started_at.
        self.started_at: datetime | None = None
        self._context: TaskContext | None = None  # made by context(), for this body

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
            if self.run.metadata is None:
                # One dict for the run, its results and the context: what the task writes
                # in context.metadata is what the finished result shows.
                self.run.metadata = {}
            self._result = result_of(self.task, self.run, status=TaskResultStatus.RUNNING)
        return self._result

    def option(self, name: str) -> Any:
        return effective_option(self.task, self.run.options, name)

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The body's arguments: a fresh context first when the task takes one."""
        assert self.task is not None
        args = list(self.run.args)
        self._context = None  # an atomic body run again after a rollback: a new context
        if self.task.takes_context:
            args.insert(0, self.context())
        return args, self.run.kwargs

    def context(self) -> TaskContext:
        """The attempt's context: the one a ``takes_context`` task gets, and the worker
        middleware's (taskmill.middleware), whether the task takes one or not."""
        if self._context is None:
            result = self.result
            if self.metadata_writer is None:
                self.metadata_writer = MetadataWriter(
                    result.metadata,
                    run_id=self.run.id,
                    attempt=self.run.attempt,
                    database=self.database,
                )
            else:  # an atomic body run again after a rollback: it starts from the claim's
                self.metadata_writer.restart()
            self._context = TaskContext(
                task_result=result,
                stop_event=self.stop_event,
                metadata_writer=self.metadata_writer,
                database=self.database,
                _retry_rule=self.would_retry,
            )
        return self._context

    def would_retry(self, exc: BaseException) -> bool:
        """Whether failing with ``exc`` now would leave the run another attempt, by the
        rules ``failed`` applies before it asks the backoff (``TaskContext.will_retry``)."""
        if self.task is None or not isinstance(exc, Exception) or isinstance(exc, Snooze):
            return False
        if self.stop_was_requested():  # the attempt ends cancelled, whatever it raised
            return False
        failures = task_failures(self.run.errors) + 1  # this one counts
        return may_retry(self.task, self.run.options, failures, exc, backend=self.run.backend)

    def call(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call a sync task's body, through the worker middleware if there is any."""
        task = self.task
        assert task is not None
        if not middleware.configured():
            return task.call(*args, **kwargs)
        return middleware.call_sync(self.context(), lambda: task.call(*args, **kwargs))

    async def acall(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Await an async task's body, through the worker middleware if there is any."""
        task = self.task
        assert task is not None
        if not middleware.configured():
            return await task.func(*args, **kwargs)
        return await middleware.call_async(self.context(), lambda: task.func(*args, **kwargs))

    def final_metadata(self) -> dict[str, Any] | None:
        """What the outcome writes of the metadata (None: the row keeps its own). Raises
        ``TypeError`` when the task left in it what JSON cannot hold."""
        if self.metadata_writer is None:
            return None
        return self.metadata_writer.final()

    def _final_metadata_of_failure(self) -> dict[str, Any] | None:
        """``final_metadata`` for an attempt that failed anyway: its own failure stands, and
        metadata that cannot be stored is left out (the row keeps what was saved) and said."""
        try:
            return self.final_metadata()
        except TypeError as exc:
            logger.warning(
                "Run %s: its metadata is left as last saved: %s",
                self.run.id,
                exc,
                extra=run_fields(self.run),
            )
            return None

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
        try:
            metadata = self.final_metadata()
        except TypeError as exc:  # as for a return value: what it left cannot be stored
            return self.failed(exc, duration)
        now = self.ended_at(duration)
        outcome = Outcome(
            run_id=self.run.id,
            attempt=self.run.attempt,
            status=RunStatus.SUCCESSFUL,
            finished_at=now,
            return_value=value,
            errors=self.run.errors,
            expires_at=expiry_for(self.task, self.run.options, now, RunStatus.SUCCESSFUL),
            started_at=self.started_at,
            metadata=metadata,
        )
        return Completed(self.run, self.task, outcome, duration)

    def failed(self, exc: BaseException, duration: float) -> Completed:
        if self.stop_was_requested() and not isinstance(exc, RunCancelled):
            exc = chained(RunCancelled("stopped on request while running"), exc)
        now = self.ended_at(duration)
        # The task's own request (snooze, cancel) first: it decides, whatever it was
        # raised over (a database error the task was handling, say).
        verdict = own_verdict(self, exc, now)
        if verdict is not None:
            raised = verdict.failure
            return Completed(
                self.run,
                self.task,
                verdict.outcome,
                duration,
                failure=None if raised is None else failure_summary(raised),
                exception=raised,
            )
        error = error_entry(exc)
        interrupted = database_interruption(
            self.run, self.task, exc, error, now=now, started_at=self.started_at
        )
        metadata = self._final_metadata_of_failure()
        if interrupted is not None:  # the database's fault: the run goes again, as if lost
            interrupted.metadata = metadata
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
            status = RunStatus.READY
            available_at = now + timedelta(seconds=delay)
        else:
            status = RunStatus.CANCELLED if isinstance(exc, RunCancelled) else RunStatus.FAILED
            available_at = None
        outcome = Outcome(
            run_id=self.run.id,
            attempt=self.run.attempt,
            status=status,
            finished_at=now,
            errors=errors,
            available_at=available_at,
            expires_at=expiry_for(self.task, self.run.options, now, status),
            started_at=self.started_at,
            metadata=metadata,
        )
        return Completed(
            self.run, self.task, outcome, duration, failure=failure_summary(exc), exception=exc
        )


def ended_unstarted(run: ClaimedRun, database: str) -> Completed:
    """The outcome of a run that ends before it started. Lost: it is fenced out. Asked to
    stop: it lands, CANCELLED, and what follows a final outcome (its on_failure callback,
    its result's time-to-live) needs the task at hand."""
    attempt = Attempt(run, database=database)
    attempt.task = registry.resolve_or_none(run.task_path)
    reason = "stopped before it started (asked to stop, or lost by this worker)"
    return attempt.failed(RunCancelled(reason), 0.0)


__all__ = ["Attempt", "Completed", "ended_unstarted", "signal_sender"]
