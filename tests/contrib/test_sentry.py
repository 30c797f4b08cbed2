"""taskmill.contrib.sentry with the real sentry-sdk in real worker processes: its transport
(tests/testapp/observability.py) writes what the SDK would send to the record dir. A failed
attempt is one event, tagged with its own run and grouped by task and exception, handled
while the run will be retried; a snooze, a cancel and a success are none; every attempt is a
queue.process transaction (a segment span on sentry-sdk 3) named by its task's path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from taskmill.models import Run, RunStatus
from tests.testapp import snooze_tasks, tasks

pytest.importorskip("sentry_sdk", reason="the dev extra installs it")

pytestmark = pytest.mark.django_db(transaction=True)

MIDDLEWARE = "taskmill.contrib.sentry.middleware"
FLAKY = "tests.testapp.tasks.flaky"


def sentry_items(record_dir: Path) -> list[dict[str, Any]]:
    items = []
    for path in sorted(record_dir.glob("sentry-*.jsonl")):
        items.extend(json.loads(line) for line in path.read_text().splitlines())
    return items


def events(record_dir: Path) -> list[dict[str, Any]]:
    return [item["payload"] for item in sentry_items(record_dir) if item["type"] == "event"]


def _plain(attributes: dict[str, Any]) -> dict[str, Any]:
    # sentry-sdk 3 sends each attribute as {"type": ..., "value": ...}.
    return {key: value["value"] for key, value in attributes.items()}


def transactions(record_dir: Path) -> list[dict[str, Any]]:
    """Each attempt's root span: a segment span (sentry-sdk 3, or 2 streaming) or a
    transaction (sentry-sdk 2), as {name, op, data, status, trace_id}."""
    found = []
    for item in sentry_items(record_dir):
        if item["type"] == "span":
            for span in item["payload"]["items"]:
                if span.get("is_segment"):
                    data = _plain(span.get("attributes", {}))
                    found.append(
                        {
                            "name": span["name"],
                            "op": data.get("sentry.op"),
                            "data": data,
                            "status": span["status"],
                            "trace_id": span["trace_id"],
                        }
                    )
        elif item["type"] == "transaction":
            trace = item["payload"]["contexts"]["trace"]
            found.append(
                {
                    "name": item["payload"]["transaction"],
                    "op": trace.get("op"),
                    "data": trace.get("data", {}),
                    "status": "error" if trace.get("status") == "internal_error" else "ok",
                    "trace_id": trace["trace_id"],
                }
            )
    return found


def of_run(found: list[dict[str, Any]], result) -> list[dict[str, Any]]:
    """The events of one run, by attempt."""
    mine = [event for event in found if event["tags"]["taskmill.run_id"] == result.id]
    return sorted(mine, key=lambda event: int(event["tags"]["taskmill.attempt"]))


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    return event["exception"]["values"][-1]


def run_sentry_worker(run_worker, report: str = "all") -> Any:
    return run_worker(
        "--burst", "--no-scheduler", "--concurrency", "2",
        env={"TASKMILL_TEST_MIDDLEWARE": MIDDLEWARE, "TASKMILL_TEST_SENTRY": report},
    )  # fmt: skip


def test_each_failed_attempt_is_one_event_of_its_own_run_handled_until_the_last(
    run_worker, record_dir
):
    recovers = tasks.flaky.enqueue(2)  # max_attempts=3: fails twice, then succeeds
    gives_up = tasks.flaky.enqueue(5)  # fails its last attempt too
    on_loop = tasks.async_flaky.enqueue()  # fails once, on the event loop
    in_child = tasks.flaky.using(timeout=20).enqueue(1)  # a timeout: in a child process
    not_retried = tasks.picky.enqueue("value")  # max_attempts=3, but it retries no ValueError
    snoozes = snooze_tasks.planned.enqueue("SO")
    cancels = snooze_tasks.planned.enqueue("C")
    succeeds = tasks.add.enqueue(1, 2)
    worker = run_sentry_worker(run_worker)

    statuses = dict(Run.objects.values_list("id", "status"))
    assert statuses[int(recovers.id)] == statuses[int(snoozes.id)] == RunStatus.SUCCESSFUL
    assert statuses[int(gives_up.id)] == RunStatus.FAILED
    assert statuses[int(cancels.id)] == RunStatus.CANCELLED
    found = events(record_dir)
    # 2 + 3 + 1 + 1 + 1 failed attempts and nothing else: the worker's and Django's log lines
    # about the failed runs are no events of their own.
    assert len(found) == 8, [event.get("logentry") or exception_of(event) for event in found]
    assert {exception_of(event)["mechanism"]["type"] for event in found} == {"taskmill"}

    for event in found:
        tags = event["tags"]
        # The tags are the attempt's own (its exception says which attempt it was), even
        # with two attempts running at a time on one worker.
        assert re.search(rf"\battempt {tags['taskmill.attempt']}\b", exception_of(event)["value"])
        run = Run.objects.get(pk=int(tags["taskmill.run_id"]))
        assert tags["taskmill.task"] == run.task_path
        assert tags["taskmill.queue"] == "default"
        # The worker's id, also for the attempt in its child process.
        assert tags["taskmill.worker"] in run.worker_ids
        assert f":{worker.process.pid}:" in tags["taskmill.worker"]
        raised = exception_of(event)["type"]
        assert event["fingerprint"] == ["taskmill", run.task_path, f"builtins.{raised}"]
        assert raised == ("ValueError" if run.pk == int(not_retried.id) else "ConnectionError")
        assert event["transaction"] == run.task_path

    def handled(result) -> list[bool]:
        return [exception_of(event)["mechanism"]["handled"] for event in of_run(found, result)]

    assert handled(recovers) == [True, True]
    assert handled(gives_up) == [True, True, False]
    assert handled(on_loop) == [True]
    assert handled(in_child) == [True]
    assert handled(not_retried) == [False]
    assert of_run(found, snoozes) == of_run(found, cancels) == of_run(found, succeeds) == []

    spans = transactions(record_dir)
    add_spans = [span for span in spans if span["name"] == "tests.testapp.tasks.add"]
    assert len(add_spans) == 1
    (span,) = add_spans
    assert span["op"] == "queue.process" and span["status"] == "ok"
    assert span["data"]["messaging.message.id"] == succeeds.id
    assert span["data"]["messaging.destination.name"] == "default"
    assert span["data"]["messaging.message.retry.count"] == 0
    assert span["data"]["messaging.system"] == "taskmill"

    def attempts_of(result) -> list[dict[str, Any]]:
        mine = [s for s in spans if s["data"].get("messaging.message.id") == result.id]
        return sorted(mine, key=lambda s: s["data"]["messaging.message.retry.count"])

    recovered = attempts_of(recovers)
    assert [s["name"] for s in recovered] == [FLAKY] * 3
    assert [s["data"]["messaging.message.retry.count"] for s in recovered] == [0, 1, 2]
    assert [s["status"] for s in recovered] == ["error", "error", "ok"]
    # Each attempt its own trace, and its event in it.
    assert len({s["trace_id"] for s in recovered}) == 3
    first_event = of_run(found, recovers)[0]
    assert first_event["contexts"]["trace"]["trace_id"] == recovered[0]["trace_id"]
    # A snooze is no error.
    assert [s["status"] for s in attempts_of(snoozes)] == ["ok", "ok"]


def test_final_reports_only_the_failure_that_ends_the_run(run_worker, record_dir):
    recovers = tasks.flaky.enqueue(2)
    gives_up = tasks.flaky.enqueue(5)
    run_sentry_worker(run_worker, report="final")

    found = events(record_dir)
    assert of_run(found, recovers) == []
    (event,) = of_run(found, gives_up)
    assert event["tags"]["taskmill.attempt"] == "3"
    assert exception_of(event)["mechanism"]["handled"] is False
    assert len(found) == 1


def test_an_unknown_report_setting_stops_the_worker_building_its_middleware():
    from taskmill.contrib.sentry import middleware

    with (
        override_settings(TASKMILL_SENTRY_REPORT_RETRIES="retries"),
        pytest.raises(ImproperlyConfigured, match="'all', 'final'"),
    ):
        middleware(lambda context: None)
