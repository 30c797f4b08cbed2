"""The attempt's CONSUMER span (worker middleware).

The first attempt is the child of the enqueue's span, so a request's trace shows the work
it caused. Any later attempt (a retry after a backoff, a snooze's return, a rescue after a
lost worker) starts a trace of its own with a link to the enqueue's span: a child would
stretch the first trace over hours of backoff, and trace back-ends handle those badly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import iscoroutinefunction
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ...exceptions import class_path
from ..failures import is_failure
from .conventions import ATTEMPT, ERROR_TYPE, MESSAGE_ID, attributes, stored_context, tracer


def _origin(context: Any) -> tuple[Context | None, list[Link] | None]:
    """The parent context and the links of the attempt's span."""
    enqueued = stored_context(context.metadata)
    if enqueued is None:  # enqueued untraced: a span of its own (or under the current one)
        return None, None
    if context.attempt == 1:
        return enqueued, None
    producer = trace.get_current_span(enqueued).get_span_context()
    return Context(), [Link(producer)]  # an empty context: a new trace


@contextmanager
def consumer_span(context: Any) -> Iterator[None]:
    result = context.task_result
    queue = result.task.queue_name
    data = attributes(queue, "process", result.task.module_path)
    data[MESSAGE_ID] = str(result.id)
    data[ATTEMPT] = context.attempt
    parent, links = _origin(context)
    with tracer.start_as_current_span(
        f"process {queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=data,
        links=links,
        # Decided below: a snooze or a cancel is no error.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as exc:
            if is_failure(exc, context):
                span.record_exception(exc)
                span.set_attribute(ERROR_TYPE, class_path(type(exc)))
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


def middleware(call_next: Any) -> Any:
    """The factory for ``TASKMILL_MIDDLEWARE``."""
    if iscoroutinefunction(call_next):

        async def traced_attempt(context: Any) -> Any:
            with consumer_span(context):
                return await call_next(context)

        return traced_attempt

    def traced_attempt_sync(context: Any) -> Any:
        with consumer_span(context):
            return call_next(context)

    return traced_attempt_sync


__all__ = ["consumer_span", "middleware"]
