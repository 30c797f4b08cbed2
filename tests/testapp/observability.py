"""The Sentry SDK and OpenTelemetry's SDK, set up for real in a worker process a test
starts (tests/contrib/test_sentry.py, test_opentelemetry.py), with what they would send
written to the record dir as JSON lines: the test reads them. Only their transport and
exporter are the tests': everything else is the SDKs' own.

TASKMILL_TEST_SENTRY (the value is TASKMILL_SENTRY_REPORT_RETRIES, tests/settings.py) and
TASKMILL_TEST_OTEL in a worker's environment turn them on (tests/testapp/apps.py)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _record_path(kind: str) -> Path:
    return Path(os.environ["TASKMILL_TEST_RECORD_DIR"]) / f"{kind}-{os.getpid()}.jsonl"


def _append(path: Path, entries: list[dict[str, Any]]) -> None:
    with open(path, "a") as lines:
        for entry in entries:
            lines.write(json.dumps(entry, default=str) + "\n")


def start_sentry() -> None:
    import sentry_sdk
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.transport import Transport

    path = _record_path("sentry")

    class RecordingTransport(Transport):
        """Keeps each envelope's items: {"type": ..., "payload": the item's JSON}."""

        def capture_envelope(self, envelope: Any) -> None:
            _append(
                path,
                [
                    {"type": item.type, "payload": json.loads(item.get_bytes())}
                    for item in envelope.items
                ],
            )

    sentry_sdk.init(
        dsn="https://public@example.com/1",
        transport=RecordingTransport,
        traces_sample_rate=1.0,
        # Log records at ERROR become events, as sentry-sdk 2 does by default (3 does not):
        # the worker's own line for a failed run must not be a second event.
        integrations=[LoggingIntegration(event_level=logging.ERROR)],
    )


def start_opentelemetry() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    path = _record_path("otel")

    class RecordingExporter(SpanExporter):
        """Writes each finished span (SimpleSpanProcessor: as it ends) as a JSON line."""

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            _append(path, [span_json(span) for span in spans])
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RecordingExporter()))
    trace.set_tracer_provider(provider)


def span_json(span: Any) -> dict[str, Any]:
    """What the tests assert of a span, with ids as the hex W3C writes them."""
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "traceparent": (
            f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}"
            f"-{span.context.trace_flags:02x}"
        ),
        "parent_span_id": None if parent is None else f"{parent.span_id:016x}",
        "parent_trace_id": None if parent is None else f"{parent.trace_id:032x}",
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [event.name for event in span.events],
    }
