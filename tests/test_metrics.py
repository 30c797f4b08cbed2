"""The Prometheus view: its figures after real work, its format, and its token."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from taskmill.models import Queue, RunStatsHourly, RunStatsTotal
from taskmill.pruning import prune_stats
from tests.conftest import ROOT
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client) -> dict[str, Metric]:
    """The view's text, parsed by Prometheus's own client library."""
    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Metric], name: str, **labels: str) -> float:
    family_name = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
    family_name = family_name.removesuffix("_sum")
    for found in families[family_name].samples:
        if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
            return found.value
    raise AssertionError(f"no sample {name} {labels}")


def test_counters_and_histograms_from_the_rollups_only_grow(client, run_worker):
    tasks.add.enqueue_many([((i, 1), {}) for i in range(3)])
    tasks.flaky.enqueue(1)  # fails once, then succeeds: a retried attempt and a success
    run_worker("--burst", "--no-scheduler")
    tasks.send_email.enqueue("x")
    Queue.objects.create(name="emails", paused=True)

    families = scrape(client)
    assert families["taskmill_attempts"].type == "counter"
    assert families["taskmill_attempt_duration_seconds"].type == "histogram"
    assert families["taskmill_attempt_start_latency_seconds"].type == "histogram"
    assert sample(families, "taskmill_queue_runs", queue="emails", state="ready") == 1
    assert sample(families, "taskmill_queue_paused", queue="emails") == 1
    assert sample(families, "taskmill_workers_alive") == 0
    add = {"queue": "default", "task": "tests.testapp.tasks.add"}
    flaky = {"queue": "default", "task": "tests.testapp.tasks.flaky"}
    assert sample(families, "taskmill_attempts_total", **add, outcome="succeeded") == 3
    assert sample(families, "taskmill_attempts_total", **flaky, outcome="retried") == 1
    assert sample(families, "taskmill_attempts_total", **flaky, outcome="succeeded") == 1
    buckets = [
        s for s in families["taskmill_attempt_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["task"] == add["task"]
    ]  # fmt: skip
    values = [s.value for s in buckets]
    assert values == sorted(values) and values[-1] == 3  # cumulative, +Inf holds them all
    assert buckets[-1].labels["le"] == "+Inf"
    assert sample(families, "taskmill_attempt_duration_seconds_count", **add) == 3

    # The hours past retention are pruned into the totals: the counters do not move.
    RunStatsHourly.objects.update(hour=timezone.now() - timedelta(days=30))
    assert prune_stats("default", timezone.now()) > 0
    assert not RunStatsHourly.objects.exists() and RunStatsTotal.objects.exists()
    pruned = scrape(client)
    for name, labels in (
        ("taskmill_attempts_total", {**add, "outcome": "succeeded"}),
        ("taskmill_attempts_total", {**flaky, "outcome": "retried"}),
        ("taskmill_attempt_duration_seconds_count", add),
        ("taskmill_attempt_start_latency_seconds_bucket", {**add, "le": "+Inf"}),
    ):
        assert sample(pruned, name, **labels) == sample(families, name, **labels), name
    # New work adds to what the totals hold.
    tasks.add.enqueue(2, 2)
    run_worker("--burst", "--no-scheduler")
    again = scrape(client)
    assert sample(again, "taskmill_attempts_total", **add, outcome="succeeded") == 4


@override_settings(TASKMILL_METRICS_TOKEN="s3cret")
def test_a_token_is_required_when_set(client):
    assert client.get("/metrics/").status_code == 403
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_the_grafana_dashboard_asks_only_for_metrics_the_view_exports(client):
    dashboard = json.loads((ROOT / "docs" / "grafana" / "taskmill.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"taskmill_[a-z_]+", target["expr"])
    }
    text = client.get("/metrics/").content.decode()
    exported = set(re.findall(r"^# TYPE (taskmill_[a-z_]+) ", text, re.M))
    histograms = set(re.findall(r"^# TYPE (taskmill_[a-z_]+) histogram", text, re.M))
    for name in asked:
        family = name.removesuffix("_bucket") if name.endswith("_bucket") else name
        assert family in exported, name
        assert not name.endswith("_bucket") or family in histograms, name
    assert len(asked) >= 8
