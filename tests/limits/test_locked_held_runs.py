"""A slot frees while the held run it has room for is locked by another transaction (one
cut off from the database mid-way keeps its locks until the server notices): the run is
passed over, not waited for, and the key is looked at again within a second, not at the
30 s backstop (the soak's "slot leaked")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from taskmill.limits.gate import BACKSTOP, SKIPPED_LOOK, freed_keys, look_again, settle_slots
from taskmill.models import Limit, Run, RunStatus
from tests.conftest import held_by_another_transaction
from tests.limits.holding import claim, held
from tests.testapp.limit_tasks import sync_account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite locks the whole database"),
]

KEY = "concurrency:tests.testapp.limit_tasks.sync_account:acct-1"


def test_a_held_run_locked_elsewhere_is_looked_at_again_soon() -> None:
    running, waiting = (int(sync_account.enqueue(account="acct-1").id) for _ in range(2))
    claim()
    assert held([running, waiting]) == [waiting]

    def lock_the_held_run() -> None:
        list(Run.objects.select_for_update().filter(pk=waiting))

    with held_by_another_transaction(lock_the_held_run):
        # The running run ends and frees its slot, as an outcome's settle does.
        with transaction.atomic():
            Run.objects.filter(pk=running).update(status=RunStatus.SUCCESSFUL)
            settle_slots("default", (), freed_keys("default", KEY.partition(":")[2]))
        assert held([waiting]) == [waiting], "a locked row was let go"
        release_at = Limit.objects.get(key=KEY).release_at
        assert release_at is not None
        assert release_at - timezone.now() <= SKIPPED_LOOK < BACKSTOP

    # The lock gone, the releaser's next look lets the run go.
    look_again("default", release_at + timedelta(milliseconds=1))
    assert held([waiting]) == []
    assert Run.objects.get(pk=waiting).due is True
