"""A burst worker exits when nothing claimable is left, not when one claim came back empty.

A claim passes over rows other transactions lock (SKIP LOCKED). On MariaDB a concurrent
claim on another queue locks, for the time of its statement, the rows its scan looks at: CI
once saw a burst worker exit at once and leave ten rescued runs READY, an idle worker on
another queue claiming at that moment. The worker asks ``Engine.any_claimable``, which reads
without locks, before it exits (its contract test: tests/db/test_engine_queue.py)."""

from __future__ import annotations

import pytest
from django.db import connection

from taskmill.models import Run, RunStatus
from tests.conftest import held_by_another_transaction, wait_until
from tests.limits.runs import IDLE_SHARE, busy_share
from tests.testapp import tasks

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="SQLite locks the database, not rows: no SKIP LOCKED"
    ),
]


def test_a_burst_worker_waits_out_a_lock_on_a_due_run(start_worker):
    locked = tasks.add.using(priority=10).enqueue(1, 1)
    free = tasks.add.enqueue(2, 2)
    with held_by_another_transaction(
        lambda: list(Run.objects.select_for_update().filter(pk=int(locked.id))), timeout=90
    ):
        worker = start_worker("--burst", "--no-scheduler")
        wait_until(
            lambda: Run.objects.get(pk=int(free.id)).status == RunStatus.SUCCESSFUL,
            message=lambda: f"the free run to be done:\n{worker.output}",
        )
        # Its claims pass the locked run over: that is no empty queue.
        assert worker.process.poll() is None, worker.output
        # And it waits for it at its idle poll's pace, not claiming again and again.
        share = busy_share(worker.process.pid, 1.5)
        assert share < IDLE_SHARE / 2, f"a burst worker waiting on a lock used {share:.0%} of a CPU"
    assert worker.wait(60) == 0, worker.output
    assert Run.objects.get(pk=int(locked.id)).status == RunStatus.SUCCESSFUL
