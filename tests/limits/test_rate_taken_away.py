"""A rate-limited run taken from its worker before its body began (the worker frozen past its
lease, the run rescued and claimed again) does not begin there, and counts once.

The long SQLite soak (seed 644955197) saw the gate record 21 starts in a window of a 20/5s
rate: a frozen worker's start, no longer counted once its run was rescued, was marked begun
when the worker thawed, beside the new attempt's (taskmill/limits/starts.py, slots.py)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from taskmill.db import get_engine
from taskmill.limits.gate import settle_slots
from taskmill.limits.slots import starts_since
from taskmill.models import LimitStart, Run, RunStatus
from taskmill.worker.attempt import Attempt
from taskmill.worker.duties.lifeline import rescue_expired
from taskmill.worker.runners import run_sync
from tests.conftest import read_records
from tests.testapp.limit_tasks import call_partner

pytestmark = pytest.mark.django_db(transaction=True)


def claim_as(worker_id: str):
    engine, now = get_engine("default"), timezone.now()
    with transaction.atomic():
        claimed = engine.claim(
            worker_id=worker_id,
            limit=10,
            now=now,
            lease_until=now + timedelta(minutes=5),
            queues=None,
        )
        return settle_slots("default", claimed)


def test_a_start_taken_away_before_its_body_does_not_begin_and_counts_once(
    record_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TASKMILL_TEST_RECORD_DIR", str(record_dir))
    call_partner.enqueue(0)
    (frozen,) = claim_as("frozen")
    # Its worker froze before the body began; the lease ran out, a live worker rescued it.
    Run.objects.filter(pk=frozen.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert rescue_expired("default", timezone.now()) == (1, 1)
    (again,) = claim_as("alive")
    assert again.id == frozen.id and again.attempt == frozen.attempt + 1
    # One start not begun for the run: the lost attempt's was forgotten with the new one's.
    assert list(LimitStart.objects.filter(run_id=frozen.id).values_list("begun", flat=True)) == [
        False
    ]

    # The frozen worker thaws: its body must not begin, nor its start be written.
    stale = run_sync(Attempt(frozen, database="default", stop_event=threading.Event()))
    assert stale.outcome.status == RunStatus.CANCELLED  # fenced out when written
    assert read_records(record_dir) == []
    assert list(LimitStart.objects.filter(run_id=frozen.id).values_list("begun", flat=True)) == [
        False
    ]

    # The attempt that holds the run begins, and its start counts once.
    done = run_sync(Attempt(again, database="default", stop_event=threading.Event()))
    assert done.outcome.status == RunStatus.SUCCESSFUL
    assert [line.split()[0] for line in read_records(record_dir)] == ["start", "end"]
    (start,) = LimitStart.objects.filter(run_id=frozen.id)
    now = timezone.now()
    assert starts_since("default", start.key, now - timedelta(seconds=60), now)[:2] == (1, 0)
