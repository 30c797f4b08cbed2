"""The enqueue's PRODUCER span, and the trace context each new run carries
(an enqueue hook: taskmill.hooks).

One span per insert: one run (``messaging.message.id``), or many runs of one task from a
bulk enqueue (``messaging.batch.message_count``), each carrying the span's context. It is
entered before the insert, so its context can be written into the runs, and ended after
it, when their ids are known.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import SpanKind

from .conventions import BATCH_COUNT, MESSAGE_ID, attributes, current_carrier, tracer


@contextmanager
def producer_span(task: Any, runs: list[Any]) -> Iterator[None]:
    queue = runs[0].queue_name  # one task's runs: one queue
    data = attributes(queue, "send", runs[0].task_path)
    if len(runs) > 1:
        data[BATCH_COUNT] = len(runs)
    name, kind = f"send {queue}", SpanKind.PRODUCER
    with tracer.start_as_current_span(name, kind=kind, attributes=data) as span:
        carrier = current_carrier()
        if carrier:
            for run in runs:
                # A dict per run: the backend gave each its own, or none.
                run.extra["metadata"] = {**(run.extra.get("metadata") or {}), **carrier}
        yield
        if len(runs) == 1 and runs[0].pk is not None:
            span.set_attribute(MESSAGE_ID, str(runs[0].pk))
