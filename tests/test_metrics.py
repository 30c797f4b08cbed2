"""The Prometheus view: its figures after real work, its format, and its token."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from taskmill.models import Queue, RunStats
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_metrics_show_queues_workers_and_the_last_minute(client, run_worker):
    tasks.add.enqueue_many([((i, 1), {}) for i in range(3)])
    run_worker("--burst", "--no-scheduler")
    tasks.send_email.enqueue("x")
    Queue.objects.create(name="emails", paused=True)
    # The worker's rows are for the current minute: move them to the last complete one.
    last = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    RunStats.objects.update(minute=last)

    response = client.get("/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert 'taskmill_queue_runs{queue="emails",state="ready"} 1\n' in text
    assert 'taskmill_queue_paused{queue="emails"} 1\n' in text
    assert "taskmill_workers_alive 0\n" in text
    labels = 'queue="default",task="tests.testapp.tasks.add",status="SUCCESSFUL"'
    assert f"taskmill_attempts_last_minute{{{labels}}} 3\n" in text
    assert f'taskmill_attempt_duration_last_minute_seconds_bucket{{{labels},le="+Inf"}} 3\n' in text
    # Every sample line is "name{labels} value".
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [0-9.e+-]+", line), line


@override_settings(TASKMILL_METRICS_TOKEN="s3cret")
def test_a_token_is_required_when_set(client):
    assert client.get("/metrics/").status_code == 403
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
