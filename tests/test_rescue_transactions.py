"""The lifeline rescues a few runs per transaction (taskmill/worker/duties/lifeline.py).

One transaction for a whole pass kept every run of it RUNNING, its slots held, until it
committed, and a cut session, a restart or the rescuer's own death meanwhile rolled the
whole pass back (the long PostgreSQL soak: 'slot leaked' 4-5 s past the leases). Here the
database really drops the rescuer's session part way through a pass.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from taskmill.db import get_engine
from taskmill.models import Run, RunStatus
from taskmill.worker.duties.lifeline import CHUNK, Lifeline
from tests.faults.db_faults import SPOTS, kill_session
from tests.testapp.tasks import noop

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no session to kill"),
]


def lost_runs(count: int) -> list[int]:
    """``count`` runs claimed by a worker that is gone: RUNNING, their leases run out."""
    ids = [int(noop.enqueue().id) for _ in range(count)]
    now = timezone.now()
    with transaction.atomic():
        get_engine("default").claim(
            worker_id="gone@test",
            limit=count,
            now=now,
            lease_until=now + timedelta(minutes=10),
            queues=None,
        )
    Run.objects.filter(pk__in=ids).update(lease_expires_at=now - timedelta(seconds=1))
    assert Run.objects.filter(pk__in=ids, status=RunStatus.RUNNING).count() == count
    return ids


def rescue_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("Rescued run")]


def test_a_session_cut_mid_pass_keeps_the_rescues_already_committed(caplog):
    caplog.set_level(logging.WARNING, logger="taskmill.worker")
    ids = lost_runs(2 * CHUNK + 5)
    rescues = 0

    def cut_the_third_share(execute, sql, params, many, context):
        nonlocal rescues
        if SPOTS["rescue"].search(sql):
            rescues += 1
            if rescues == 2 * CHUNK + 1:
                kill_session(context["connection"])
        return execute(sql, params, many, context)

    lifeline = Lifeline("default")
    with connection.execute_wrapper(cut_the_third_share), pytest.raises(DatabaseError):
        lifeline.run(timezone.now())
    connection.close()  # as the duty's runner does with a broken connection

    # Two shares committed before the cut: those runs are back, their slots free.
    still = set(
        Run.objects.filter(pk__in=ids, status=RunStatus.RUNNING).values_list("id", flat=True)
    )
    assert len(still) == 5
    assert Run.objects.filter(pk__in=ids, status=RunStatus.READY).count() == 2 * CHUNK
    # Only what committed is said to be rescued.
    assert len(rescue_lines(caplog)) == 2 * CHUNK
    assert not any(
        f"Rescued run {run_id} " in line for run_id in still for line in rescue_lines(caplog)
    )

    lifeline.run(timezone.now())
    assert not Run.objects.filter(pk__in=ids, status=RunStatus.RUNNING).exists()
    said = [int(line.split()[2]) for line in rescue_lines(caplog)]
    assert sorted(said) == sorted(ids)  # each rescue said once
