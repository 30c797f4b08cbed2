"""A batch's seal that the database fails for a passing reason is tried again: an unsealed
batch never finishes. CI's MariaDB picked the seal as a deadlock's victim while four
workers settled its members; here the deadlock is made for real (tests/faults/db_faults.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import OperationalError, connection

import taskmill
from taskmill.models import Batch
from tests.faults.db_faults import deadlock
from tests.testapp import tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)

SEAL_LOCK = re.compile(r"FROM [`\"]?taskmill_batch[`\"]? .*FOR UPDATE", re.S)


class DeadlockOnce:
    """Deadlocks the first statement that locks a batch row, for real; the others pass."""

    def __init__(self) -> None:
        self.deadlocks = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if self.deadlocks == 0 and SEAL_LOCK.search(sql):
            self.deadlocks += 1
            deadlock(context["connection"])  # raises the server's deadlock error
        return execute(sql, params, many, context)


@pytest.fixture
def crossing_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no row locks to cross: one writer at a time, no deadlock")
    rows = Effect.objects.create(name="lock-a").pk, Effect.objects.create(name="lock-b").pk
    monkeypatch.setenv("TASKMILL_TEST_FAULT_ROWS", ",".join(map(str, rows)))


def test_a_seal_picked_as_a_deadlocks_victim_is_tried_again(crossing_rows):
    deadlocking = DeadlockOnce()
    # The block's own enqueues lock no batch row: the seal's lock is the first.
    with connection.execute_wrapper(deadlocking), taskmill.batch(description="two") as batch:
        tasks.add.enqueue(1, 2)
        tasks.add.enqueue(3, 4)

    assert deadlocking.deadlocks == 1
    row = Batch.objects.get(pk=batch.pk)
    assert (row.sealed, row.total, row.pending) == (True, 2, 2)
    assert (batch.sealed, batch.total) == (True, 2)


def test_a_seal_inside_a_callers_transaction_is_not_tried_again(crossing_rows):
    """The caller's transaction broke with the deadlock: only its owner can begin again."""
    from django.db import transaction

    deadlocking = DeadlockOnce()
    with (
        pytest.raises(OperationalError),
        transaction.atomic(),
        connection.execute_wrapper(deadlocking),
        taskmill.batch() as batch,
    ):
        tasks.add.enqueue(1, 2)
    assert deadlocking.deadlocks == 1
    assert not Batch.objects.filter(pk=batch.pk).exists()  # rolled back with the caller's
