"""The middleware: one isolated Sentry scope per attempt, its tags, its span, and the report
of its failure.

Isolation: ``sentry_sdk.isolation_scope()`` forks the scopes into a context variable for the
attempt and restores them after, so tags set for one attempt never reach another, whether
the attempts share a task thread one after the other or the event loop at the same time.

Retried or not: ``context.will_retry(exc)`` applies the run's ``max_attempts`` and its task's
``retry_on`` as the worker will (taskmill.retries.may_retry). A backoff that returns None to
stop early is not foreseen: that last failure is reported handled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from asgiref.sync import iscoroutinefunction

from ...exceptions import class_path
from ..failures import is_failure
from .conf import reports_retries
from .sdk import attempt_span, exception_event, filter_attempt_log_lines


def tags_of(context: Any) -> dict[str, str]:
    result = context.task_result
    worker_ids = result.worker_ids
    return {
        "taskmill.run_id": str(result.id),
        "taskmill.task": result.task.module_path,
        "taskmill.attempt": str(context.attempt),
        "taskmill.queue": result.task.queue_name,
        # The claim appends the claiming worker's id: this attempt's worker.
        "taskmill.worker": worker_ids[-1] if worker_ids else "",
    }


def _report(exc: BaseException, context: Any, tags: dict[str, str], all_failures: bool) -> None:
    will_retry = context.will_retry(exc)
    if will_retry and not all_failures:
        return
    event, hint = exception_event(exc, handled=will_retry)
    event["fingerprint"] = ["taskmill", tags["taskmill.task"], class_path(type(exc))]
    sentry_sdk.capture_event(event, hint=hint)


@contextmanager
def watched(context: Any, all_failures: bool) -> Iterator[None]:
    """The attempt in its own scope and span; its failure reported on the way out."""
    with sentry_sdk.isolation_scope() as scope:
        scope.clear_breadcrumbs()  # another attempt's, on the same thread
        tags = tags_of(context)
        scope.set_tags(tags)
        path = tags["taskmill.task"]
        sentry_sdk.set_transaction_name(path, source="task")
        span = attempt_span(
            path,
            {
                "messaging.system": "taskmill",
                "messaging.message.id": tags["taskmill.run_id"],
                "messaging.destination.name": tags["taskmill.queue"],
                "messaging.message.retry.count": context.attempt - 1,
            },
        )
        failed = False
        try:
            yield
        except BaseException as exc:
            if is_failure(exc, context):
                failed = True
                _report(exc, context, tags, all_failures)
            raise
        finally:
            if span is not None:
                span.end(failed)


def middleware(call_next: Any) -> Any:
    """The factory for ``TASKMILL_MIDDLEWARE``; attempts pass through untouched while the
    SDK is not initialised."""
    all_failures = reports_retries()
    filter_attempt_log_lines()

    if iscoroutinefunction(call_next):

        async def sentry_attempt(context: Any) -> Any:
            if not sentry_sdk.get_client().is_active():
                return await call_next(context)
            with watched(context, all_failures):
                return await call_next(context)

        return sentry_attempt

    def sentry_attempt_sync(context: Any) -> Any:
        if not sentry_sdk.get_client().is_active():
            return call_next(context)
        with watched(context, all_failures):
            return call_next(context)

    return sentry_attempt_sync


__all__ = ["middleware", "tags_of", "watched"]
