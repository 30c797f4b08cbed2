"""taskmill.contrib.opentelemetry with OpenTelemetry's own SDK: the enqueue's PRODUCER span
in this process (its in-memory exporter), each attempt's CONSUMER span in real worker
processes (an exporter there writes them to the record dir, tests/testapp/observability.py).
The first attempt is the enqueue's child; a later one starts its own trace, linked to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs it")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from taskmill.contrib import opentelemetry as taskmill_otel
from taskmill.models import Run, RunStatus
from tests.testapp import snooze_tasks, tasks
from tests.testapp.observability import span_json

pytestmark = pytest.mark.django_db(transaction=True)

_exporter = InMemorySpanExporter()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """This process's finished spans; the enqueue traced while the test runs."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the first test here: set it up, once
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    taskmill_otel.install()
    yield _exporter
    taskmill_otel.uninstall()


def worker_spans(record_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(record_dir.glob("otel-*.jsonl")):
        spans.extend(json.loads(line) for line in path.read_text().splitlines())
    return spans


def attempts_of(spans: list[dict[str, Any]], result) -> list[dict[str, Any]]:
    mine = [s for s in spans if s["attributes"].get("messaging.message.id") == result.id]
    return sorted(mine, key=lambda s: s["attributes"]["taskmill.attempt"])


def run_traced_worker(run_worker) -> None:
    run_worker(
        "--burst", "--no-scheduler",
        env={
            "TASKMILL_TEST_MIDDLEWARE": "taskmill.contrib.opentelemetry.middleware",
            "TASKMILL_TEST_OTEL": "1",
        },
    )  # fmt: skip


def test_first_attempts_are_the_enqueues_children_and_later_ones_new_linked_traces(
    exporter, run_worker, record_dir
):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request"):
        succeeds = tasks.add.using(metadata={"tenant": "acme"}).enqueue(1, 2)
        retried = tasks.flaky.enqueue(1)  # fails once, then succeeds
        on_loop = tasks.async_flaky.enqueue()
        in_child = tasks.add.using(timeout=20, queue_name="low").enqueue(3, 4)
        snoozed = snooze_tasks.planned.enqueue("SO")
    enqueued = {
        s["attributes"].get("messaging.message.id"): s
        for s in map(span_json, exporter.get_finished_spans())
    }
    request = enqueued.pop(None)
    assert request["name"] == "request"

    # The producer spans: children of the request, one per enqueue, by the conventions.
    producer = enqueued[succeeds.id]
    assert producer["name"] == "send default" and producer["kind"] == "PRODUCER"
    assert producer["parent_span_id"] == request["span_id"]
    assert producer["trace_id"] == request["trace_id"]
    assert producer["attributes"] == {
        "messaging.system": "taskmill",
        "messaging.destination.name": "default",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.message.id": succeeds.id,
        "taskmill.task": "tests.testapp.tasks.add",
    }
    assert enqueued[in_child.id]["name"] == "send low"
    # The run carries the producer's context, beside the caller's own metadata.
    stored = Run.objects.get(pk=int(succeeds.id)).metadata
    assert stored == {
        "tenant": "acme",
        "traceparent": producer["traceparent"],
    }
    assert succeeds.metadata == stored  # the result returned says so too

    run_traced_worker(run_worker)
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.SUCCESSFUL}
    spans = worker_spans(record_dir)

    for result in (succeeds, retried, on_loop, in_child, snoozed):
        first, *later = attempts_of(spans, result)
        sent = enqueued[result.id]
        # Attempt 1: the producer's child, in the request's trace.
        assert (first["parent_span_id"], first["trace_id"]) == (sent["span_id"], sent["trace_id"])
        assert first["kind"] == "CONSUMER" and first["links"] == []
        for span in later:  # a new trace, linked to the producer
            assert span["parent_span_id"] is None
            assert span["trace_id"] != sent["trace_id"]
            assert span["links"] == [{"trace_id": sent["trace_id"], "span_id": sent["span_id"]}]
        assert len({span["trace_id"] for span in later}) == len(later)

    (first,) = attempts_of(spans, succeeds)
    assert first["name"] == "process default"
    assert first["attributes"] == {
        "messaging.system": "taskmill",
        "messaging.destination.name": "default",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": succeeds.id,
        "taskmill.task": "tests.testapp.tasks.add",
        "taskmill.attempt": 1,
    }
    assert first["status"] == "UNSET" and first["events"] == []
    assert attempts_of(spans, in_child)[0]["name"] == "process low"  # in the child process

    # A failure: the exception recorded, status ERROR; its retry succeeds, linked.
    for result in (retried, on_loop):
        failed, again = attempts_of(spans, result)
        assert failed["status"] == "ERROR" and failed["events"] == ["exception"]
        assert failed["attributes"]["error.type"] == "builtins.ConnectionError"
        assert (again["status"], again["attributes"]["taskmill.attempt"]) == ("UNSET", 2)
    # A snooze is no error.
    assert [s["status"] for s in attempts_of(spans, snoozed)] == ["UNSET", "UNSET"]


def test_a_bulk_enqueue_is_one_send_whose_context_every_run_carries(exporter):
    results = tasks.add.enqueue_many([((1, 1), {}), ((2, 2), {}), ((3, 3), {})])
    (send,) = map(span_json, exporter.get_finished_spans())
    assert send["attributes"]["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in send["attributes"]
    rows = Run.objects.filter(pk__in=[int(r.id) for r in results])
    assert [row.metadata for row in rows] == [{"traceparent": send["traceparent"]}] * 3


def test_without_install_nothing_is_traced_or_stored(exporter):
    taskmill_otel.uninstall()
    result = tasks.add.enqueue(1, 2)
    assert exporter.get_finished_spans() == ()
    assert not Run.objects.get(pk=int(result.id)).metadata
