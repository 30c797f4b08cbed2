"""The rows of limits' keys are pruned once they hold nothing back: one per account or
tenant ever used would otherwise pile up for ever. A pruned key's row comes back, with the
code's limits, the next time a run of it is claimed; what is in use is counted from the
runs, so a key pruned while its run runs still holds its slot."""

from __future__ import annotations

import pytest
from django.utils import timezone

from taskmill.models import Limit, Run, RunStatus
from taskmill.pruning import prune_limit_keys
from tests.limits.holding import claim, held, hold_some
from tests.testapp.limit_tasks import sync_account

pytestmark = pytest.mark.django_db

ACCT_7 = "concurrency:tests.testapp.limit_tasks.sync_account:acct-7"


def test_keys_holding_nothing_back_are_pruned_and_come_back_when_used():
    cases = hold_some()  # acct-7: one running, two held
    Limit.objects.create(key="concurrency:tests.testapp.limit_tasks.sync_account:acct-gone")
    waiting = Limit.objects.create(key="rate:some.task", release_at=timezone.now())
    keys_before = set(Limit.objects.values_list("key", flat=True))
    assert ACCT_7 in keys_before

    pruned = prune_limit_keys("default")
    left = set(Limit.objects.values_list("key", flat=True))
    # Kept: the key holding runs back, the one due to be looked at again.
    assert ACCT_7 in left and waiting.key in left
    assert "concurrency:tests.testapp.limit_tasks.sync_account:acct-gone" not in left
    assert pruned == len(keys_before - left) >= 1
    assert len(held(cases["acct-7"])) == 2  # nothing let go by the prune

    # A key running one run and holding none back: pruned, its slot still counted.
    Run.objects.filter(pk__in=cases["acct-7"][1:]).delete()
    Limit.objects.filter(key=ACCT_7).update(release_at=None)
    prune_limit_keys("default")
    assert not Limit.objects.filter(key=ACCT_7).exists()
    more = [int(sync_account.enqueue(account="acct-7").id) for _ in range(2)]
    assert claim() == []  # acct-7's one slot is its running run's
    assert len(held(more)) == 2
    row = Limit.objects.get(key=ACCT_7)  # written anew, with the code's limit
    assert row.concurrency_limit == 1 and row.release_at is not None
    assert Run.objects.filter(pk=cases["acct-7"][0], status=RunStatus.RUNNING).exists()
