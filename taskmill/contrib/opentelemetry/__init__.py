"""OpenTelemetry tracing of taskmill runs, by the messaging conventions.

- ``install()`` (or ``"taskmill.contrib.opentelemetry"`` in ``INSTALLED_APPS``): every
  enqueue is a PRODUCER span ``send <queue>``, and its W3C trace context is stored in each
  new run's metadata (``traceparent``, ``tracestate``).
- ``TASKMILL_MIDDLEWARE = ["taskmill.contrib.opentelemetry.middleware"]``: every attempt is
  a CONSUMER span ``process <queue>``, the child of the enqueue's span for the first
  attempt; a later one (a retry, a snooze's return, a rescue) starts a trace of its own,
  linked to the enqueue's span, instead of stretching the first trace over hours.

Spans go to the global tracer provider: set it up (the OpenTelemetry SDK, an exporter) in
settings or an AppConfig. See docs/observability.md.
"""

from __future__ import annotations

from ... import hooks
from .consumer import middleware
from .producer import producer_span


def install() -> None:
    """Trace every enqueue of this process from now on (once, however often called)."""
    hooks.add_enqueue_hook(producer_span)


def uninstall() -> None:
    hooks.remove_enqueue_hook(producer_span)


__all__ = ["install", "middleware", "uninstall"]
