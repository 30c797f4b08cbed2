"""The names OpenTelemetry's messaging conventions give, the tracer, and the W3C trace
context as a run's metadata stores it. Written out rather than imported from
opentelemetry-semantic-conventions, which is not a dependency (its messaging names are
still marked incubating)."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
BATCH_COUNT = "messaging.batch.message_count"
ERROR_TYPE = "error.type"
TASK = "taskmill.task"
ATTEMPT = "taskmill.attempt"

# W3C trace context only, whatever the project's global propagator: the keys the metadata
# holds are fixed, and a baggage header could carry what a run's metadata should not keep.
CARRIED_KEYS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()

# A proxy until the project sets its tracer provider, then that provider's.
tracer = trace.get_tracer("taskmill.contrib.opentelemetry")


def attributes(queue: str, operation: str, task_path: str) -> dict[str, Any]:
    return {
        SYSTEM: "taskmill",
        DESTINATION: queue,
        OPERATION_TYPE: operation,
        OPERATION_NAME: operation,
        TASK: task_path,
    }


def current_carrier() -> dict[str, str]:
    """The current span's trace context as ``traceparent`` (and ``tracestate``); empty
    when there is no valid span (no tracer provider set, nothing traced)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def stored_context(metadata: dict[str, Any]) -> Context | None:
    """The trace context a run's metadata carries, or None for none (or one not valid)."""
    carrier = {key: metadata[key] for key in CARRIED_KEYS if isinstance(metadata.get(key), str)}
    if "traceparent" not in carrier:
        return None
    extracted = _propagator.extract(carrier)
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted
