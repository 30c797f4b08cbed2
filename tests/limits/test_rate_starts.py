"""A rate-limited body begins only once its start is written (taskmill/limits/starts.py).

A start let go and not begun counts only while its run is RUNNING: a body that ran with its
start unwritten dropped out of every window as soon as its outcome landed, and the gate let
more starts in than the rate (the long PostgreSQL soak: 25 in a 5 s window of a 20/5s rate,
after a crash restart lost the writes of 8). Here the database really drops the session
that writes the start (a server-side kill, as a restart or a cut does).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.utils import timezone

from taskmill.limits.slots import starts_since
from taskmill.models import LimitStart, Run, RunStatus
from taskmill.worker.attempt import Attempt, Completed
from taskmill.worker.runners import run_async, run_sync
from tests.conftest import read_records, wait_until
from tests.faults.db_faults import kill_session
from tests.limits.holding import claim
from tests.testapp.limit_tasks import call_partner, call_partner_async

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no session to kill"),
]

START_TABLE = LimitStart._meta.db_table


def cutting_start_writes(times: int | None) -> tuple[Callable[..., Any], list[str]]:
    """An execute wrapper that kills its own session before each write of a start, the
    first ``times`` times (None: always); and the list of writes it cut."""
    cut: list[str] = []

    def wrapper(execute, sql, params, many, context):
        writes_start = sql.startswith("UPDATE") and START_TABLE in sql
        if writes_start and (times is None or len(cut) < times):
            cut.append(sql)
            kill_session(context["connection"])
        return execute(sql, params, many, context)

    return wrapper, cut


@pytest.fixture
def partner_run(record_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """One run of a rated task, claimed and let go by the gate: its start not begun."""
    monkeypatch.setenv("TASKMILL_TEST_RECORD_DIR", str(record_dir))
    call_partner.enqueue(0)
    (run,) = claim()
    assert LimitStart.objects.get(run_id=run.id).begun is False
    return run


def test_a_start_the_database_dropped_is_written_before_the_body_begins(partner_run, record_dir):
    wrapper, cut = cutting_start_writes(times=2)
    with connection.execute_wrapper(wrapper):
        completed = run_sync(Attempt(partner_run, database="default", stop_event=threading.Event()))
    assert len(cut) == 2
    assert completed.outcome.status == RunStatus.SUCCESSFUL
    body_began = float(read_records(record_dir)[0].split()[2])
    start = LimitStart.objects.get(run_id=partner_run.id)
    assert start.begun is True
    assert start.started_at.timestamp() <= body_began
    # Its outcome lands: the start still counts in the rate's window, as begun.
    Run.objects.filter(pk=partner_run.id).update(status=RunStatus.SUCCESSFUL)
    now = timezone.now()
    begun, pending, _ = starts_since("default", start.key, now - timedelta(seconds=2), now)
    assert (begun, pending) == (1, 0)


def test_a_body_whose_start_is_never_written_does_not_run_once_stopped(partner_run, record_dir):
    stop = threading.Event()
    wrapper, cut = cutting_start_writes(times=None)  # the database never takes it
    ended: list[Completed] = []

    def task_thread() -> None:
        try:
            with connections["default"].execute_wrapper(wrapper):
                ended.append(run_sync(Attempt(partner_run, database="default", stop_event=stop)))
        finally:
            connections["default"].close()

    thread = threading.Thread(target=task_thread)
    thread.start()
    # It keeps trying, and the body waits: nothing ran yet.
    wait_until(lambda: len(cut) >= 2, message="the start to be tried again")
    assert read_records(record_dir) == []
    stop.set()  # as a worker fencing itself (the database stayed away) stops its runs
    thread.join(timeout=30)
    assert not thread.is_alive()
    (completed,) = ended
    assert completed.outcome.status == RunStatus.CANCELLED
    assert "stopped before it started" in completed.failure
    assert read_records(record_dir) == []
    assert LimitStart.objects.get(run_id=partner_run.id).begun is False


def test_an_async_body_begins_once_its_start_is_written(record_dir, monkeypatch):
    monkeypatch.setenv("TASKMILL_TEST_RECORD_DIR", str(record_dir))
    call_partner_async.enqueue(0)
    (run,) = claim()
    wrapper, cut = cutting_start_writes(times=1)

    def arm() -> None:  # on the thread the event loop's sync calls run on
        connections["default"].execute_wrappers.append(wrapper)

    def disarm() -> None:
        connections["default"].execute_wrappers.remove(wrapper)
        connections["default"].close()

    async def attempt_on_the_loop() -> Completed:
        await sync_to_async(arm)()
        try:
            return await run_async(Attempt(run, database="default", stop_event=threading.Event()))
        finally:
            await sync_to_async(disarm)()

    completed = asyncio.run(attempt_on_the_loop())
    assert len(cut) == 1
    assert completed.outcome.status == RunStatus.SUCCESSFUL
    start = LimitStart.objects.get(run_id=run.id)
    assert start.begun is True
    assert start.started_at.timestamp() <= float(read_records(record_dir)[0].split()[2])
