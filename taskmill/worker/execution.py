"""Running one claimed run: resolve its task, send the signals, call it, record the outcome."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from .. import registry
from ..compat import (
    BaseTask,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    task_backends,
    task_started,
)
from ..db import ClaimedRun, Outcome
from ..exceptions import TaskNotRegistered
from ..results import result_of
from ..serialization import to_json_value

logger = logging.getLogger("taskmill.worker")


@dataclass(slots=True)
class Completed:
    """One finished attempt on its way to the database."""

    run: ClaimedRun
    task: BaseTask | None  # None when the run named no registered task
    outcome: Outcome
    duration: float  # seconds spent in the task itself


def error_entry(exc: BaseException) -> dict[str, str]:
    exc_type = type(exc)
    return {
        "exception_class_path": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def signal_sender(run: ClaimedRun) -> type:
    try:
        return type(task_backends[run.backend])
    except Exception:  # the alias was removed from settings since the run was enqueued
        from ..backend import DatabaseBackend

        return DatabaseBackend


class Attempt:
    """One attempt of one run; ``run_sync`` or ``run_async`` it, then read ``completed``."""

    def __init__(self, run: ClaimedRun) -> None:
        self.run = run
        self.task: BaseTask | None = None
        self.result: TaskResult | None = None

    def prepare(self) -> Completed | None:
        """Resolve the task; a run naming no registered task fails here and runs nothing."""
        try:
            self.task = registry.resolve(self.run.task_path)
        except TaskNotRegistered as exc:
            logger.error("Run %s refused: %s", self.run.id, exc)
            return self.failed(exc, 0.0)
        self.result = result_of(self.task, self.run, status=TaskResultStatus.RUNNING)
        return None

    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        assert self.task is not None and self.result is not None
        args = list(self.run.args)
        if self.task.takes_context:
            args.insert(0, TaskContext(task_result=self.result))
        return args, self.run.kwargs

    def succeeded(self, value: Any, duration: float) -> Completed:
        try:
            value = to_json_value(
                value,
                "the return value",
                f"Task {self.run.task_path!r} returned what JSON cannot hold",
            )
        except Exception as exc:  # the task ran, but its result cannot be stored
            return self.failed(exc, duration)
        outcome = Outcome(
            run_id=self.run.id,
            attempt=self.run.attempt,
            status=TaskResultStatus.SUCCESSFUL,
            finished_at=timezone.now(),
            return_value=value,
            errors=self.run.errors,
        )
        return Completed(self.run, self.task, outcome, duration)

    def failed(self, exc: BaseException, duration: float) -> Completed:
        outcome = Outcome(
            run_id=self.run.id,
            attempt=self.run.attempt,
            status=TaskResultStatus.FAILED,
            finished_at=timezone.now(),
            errors=[*self.run.errors, error_entry(exc)],
        )
        return Completed(self.run, self.task, outcome, duration)

    def run_sync(self) -> Completed:
        refused = self.prepare()
        if refused:
            return refused
        task_started.send(signal_sender(self.run), task_result=self.result)
        args, kwargs = self.arguments()
        close_old_connections()
        began = time.monotonic()
        try:
            value = self.task.call(*args, **kwargs)
        except BaseException as exc:
            return self.failed(exc, time.monotonic() - began)
        finally:
            close_old_connections()
        return self.succeeded(value, time.monotonic() - began)

    async def run_async(self) -> Completed:
        refused = self.prepare()
        if refused:
            return refused
        await task_started.asend(signal_sender(self.run), task_result=self.result)
        args, kwargs = self.arguments()
        began = time.monotonic()
        try:
            value = await self.task.func(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and asyncio.current_task().cancelling():
                raise
            return self.failed(exc, time.monotonic() - began)
        return self.succeeded(value, time.monotonic() - began)
