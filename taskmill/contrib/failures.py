"""What the observability middleware (sentry, opentelemetry) count as an attempt's failure."""

from __future__ import annotations

from typing import Any

from ..exceptions import RunCancelled, Snooze


def is_failure(exc: BaseException, context: Any) -> bool:
    """Whether the attempt fails of ``exc``, as an error to report. A ``Snooze`` and a
    ``Cancel`` are the task's own requests, and a stop requested meanwhile ends the run
    cancelled whatever it raised. What is no ``Exception`` (the cancellation of an async
    task's timeout, an interrupt) is the worker stopping the body, not the body failing."""
    if not isinstance(exc, Exception) or isinstance(exc, (Snooze, RunCancelled)):
        return False
    return not context.stop_requested


__all__ = ["is_failure"]
