"""A backlog past TASKMILL_COUNT_CAP (issue 25): the overview, ``taskmill status``, its JSON,
health and the metrics count each state's runs only up to the cap and say so; below the cap
every figure is exact, with nothing marked."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from taskmill.health import check_health
from taskmill.models import Run
from taskmill.overview import queue_overview
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

CAP = 5


def enqueue(queue: str, count: int) -> None:
    tasks.add.using(queue_name=queue).enqueue_many([((i, 1), {}) for i in range(count)])


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("taskmill", "status", *args, stdout=out)
    return out.getvalue()


def by_name(entries: list) -> dict:
    return {entry.name: entry for entry in entries}


@override_settings(TASKMILL_COUNT_CAP=CAP)
def test_figures_are_exact_up_to_the_cap():
    enqueue("default", 3)
    enqueue("emails", 2)  # five ready in all: the cap, not past it
    queues = by_name(queue_overview())
    assert (queues["default"].ready, queues["emails"].ready) == (3, 2)
    assert all(queue.capped == () for queue in queues.values())
    assert queues["default"].shown("ready") == "3"

    table = status()
    assert "counting stopped" not in table
    default_line = next(line for line in table.splitlines() if line.startswith("  default "))
    assert default_line.split()[1:6] == ["3", "0", "0", "0", "0"]
    document = json.loads(status("--json"))
    default = next(queue for queue in document["queues"] if queue["name"] == "default")
    assert (default["ready"], default["capped"], default["count_cap"]) == (3, [], CAP)


@override_settings(TASKMILL_COUNT_CAP=CAP)
def test_past_the_cap_the_figures_are_floors_and_say_so():
    enqueue("default", 7)
    enqueue("emails", 2)
    Run.objects.filter(queue_name="emails").update(
        available_at=timezone.now() - timedelta(minutes=10)
    )
    queues = by_name(queue_overview())
    # The first CAP + 1 runs in the claim's order were read, no more: floors that add up to
    # one past the cap, the oldest ready ones (emails') among them, its age exact.
    assert queues["default"].ready + queues["emails"].ready == CAP + 1
    assert queues["emails"].ready == 2 and queues["emails"].oldest_ready_age >= 600
    assert queues["default"].capped == ("ready", "scheduled")
    assert queues["default"].shown("ready") == f"{queues['default'].ready}+"
    assert queues["default"].shown("running") == "0"  # not capped: exact

    table = status()
    assert "ready, scheduled: more than 5 runs in all queues" in table
    default_line = next(line for line in table.splitlines() if line.startswith("  default "))
    assert f"{queues['default'].ready}+" in default_line.split()

    document = json.loads(status("--json"))
    default = next(queue for queue in document["queues"] if queue["name"] == "default")
    assert default["capped"] == ["ready", "scheduled"] and default["count_cap"] == CAP
    assert isinstance(default["ready"], int)  # the key keeps its type

    health = check_health(max_ready_age=60)
    assert any("'emails': 2+ ready" in problem for problem in health.problems), health


@override_settings(TASKMILL_COUNT_CAP=CAP)
def test_the_metrics_say_which_gauges_are_floors(client):
    enqueue("default", CAP + 3)
    text = client.get("/metrics/").content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("taskmill_queue_runs_capped", (("state", "ready"),))] == 1
    assert samples[("taskmill_queue_runs_capped", (("state", "running"),))] == 0
    ready = samples[("taskmill_queue_runs", (("queue", "default"), ("state", "ready")))]
    assert ready == CAP + 1
