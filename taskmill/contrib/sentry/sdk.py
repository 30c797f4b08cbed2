"""What differs between sentry-sdk 2 and 3, in one place: how an exception becomes an
event, and how an attempt's span is started and ended.

sentry-sdk 3 streams spans (``sentry_sdk.traces.start_span``; an attempt's span is the
root of its own segment, what 2 called a transaction), and so does 2 when its
``trace_lifecycle`` is ``"stream"``; otherwise sentry-sdk 2 sends a transaction
(``start_transaction``). An event built from an exception needs the client's options on 2
(which frames' local variables to keep) and takes none on 3.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from typing import Any

import sentry_sdk
from sentry_sdk.tracing_utils import has_tracing_enabled
from sentry_sdk.utils import event_from_exception

# sentry-sdk 3 has no transactions: every span streams.
STREAMS_ONLY = not hasattr(sentry_sdk, "start_transaction")
_TAKES_OPTIONS = "client_options" in inspect.signature(event_from_exception).parameters
ORIGIN = "auto.queue.taskmill"
OP = "queue.process"  # Sentry's queue conventions: the consumer's span


def exception_event(exc: BaseException, *, handled: bool) -> tuple[dict[str, Any], Any]:
    """The event and hint of ``exc``, its mechanism ``taskmill`` (handled or not)."""
    mechanism = {"type": "taskmill", "handled": handled}
    if _TAKES_OPTIONS:  # sentry-sdk 2: without them it would keep every frame's locals
        options = sentry_sdk.get_client().options
        return event_from_exception(exc, client_options=options, mechanism=mechanism)
    return event_from_exception(exc, mechanism=mechanism)


def _streams(options: dict[str, Any]) -> bool:
    if STREAMS_ONLY:
        return True
    from sentry_sdk.tracing_utils import has_span_streaming_enabled

    return has_span_streaming_enabled(options)


class AttemptSpan:
    """An attempt's span, the root of its own trace: a streamed segment span or a
    transaction. Entered on start; ``end`` sets its status and sends it."""

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        options = sentry_sdk.get_client().options
        self.streamed = _streams(options)
        if self.streamed:
            from sentry_sdk import traces

            traces.new_trace()  # not the trace of the attempt this thread ran before
            attributes = {
                "sentry.op": OP,
                "sentry.origin": ORIGIN,
                "sentry.segment.name.source": "task",
                **data,
            }
            self.span: Any = traces.start_span(name=name, attributes=attributes, parent_span=None)
        else:
            self.span = sentry_sdk.start_transaction(op=OP, name=name, source="task", origin=ORIGIN)
            for key, value in data.items():
                self.span.set_data(key, value)
        self.span.__enter__()  # the active span: what the task's own spans nest under

    def end(self, failed: bool) -> None:
        if self.streamed:
            self.span.status = "error" if failed else "ok"
        else:
            self.span.set_status("internal_error" if failed else "ok")
        self.span.__exit__(None, None, None)


def attempt_span(name: str, data: dict[str, Any]) -> AttemptSpan | None:
    """A span for the attempt, or None when the SDK does no tracing."""
    if not has_tracing_enabled(sentry_sdk.get_client().options):
        return None
    return AttemptSpan(name, data)


# The lines the worker and Django's tasks framework log, at ERROR, for a failed run: the
# middleware's event stands for them, and the logging integration would make a second one.
_ATTEMPT_LINE = re.compile(r"Run \d+ \(.*\) attempt \d+ ")
_FRAMEWORK_LOGGERS = {"django.tasks", "django_tasks"}
_installed = threading.Lock()
_filtering = False


def _drop_attempt_log_lines(event: Any, hint: Any) -> Any:
    record = (hint or {}).get("log_record")
    if record is None or record.levelno < logging.ERROR or not isinstance(record.msg, str):
        return event
    if record.name == "taskmill.worker" and _ATTEMPT_LINE.match(record.msg):
        return None
    if record.name in _FRAMEWORK_LOGGERS and record.msg.startswith("Task id="):
        return None
    return event


def filter_attempt_log_lines() -> None:
    """Keep the logging integration from reporting a failed attempt a second time (once
    per process; the SDK has no way to remove a global event processor)."""
    global _filtering
    with _installed:
        if not _filtering:
            from sentry_sdk.scope import add_global_event_processor

            add_global_event_processor(_drop_attempt_log_lines)
            _filtering = True
