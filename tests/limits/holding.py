"""Runs held back by the real gate, without a worker: a claim as a worker makes it, gated in
its transaction. For the tests of what the control room, ``taskmill status`` and the
metrics show of flow control."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from taskmill.db import get_engine
from taskmill.db.records import ClaimedRun
from taskmill.limits.gate import settle_slots
from taskmill.models import Run, RunStatus
from tests.testapp.limit_tasks import call_erp, sync_account, tenant_job, two_at_a_time

WORKER = "holding@test"


def claim(limit: int = 100, queues: Sequence[str] | None = None) -> list[ClaimedRun]:
    """Claim up to ``limit`` due runs and let the gate keep those that fit (RUNNING); the
    others are held back or handed back, as in a worker's claim."""
    engine = get_engine("default")
    now = timezone.now()
    with transaction.atomic():
        claimed = engine.claim(
            worker_id=WORKER,
            limit=limit,
            now=now,
            lease_until=now + timedelta(minutes=10),
            queues=queues,
        )
        return settle_slots("default", claimed)


def hold_some() -> dict[str, list[int]]:
    """A held run of every kind, from one claim of everything: two runs of the key acct-7
    held (one running), one of two_at_a_time's task-wide limit (two running), and the erp
    queue full (two running, one handed back, due). Returns the run ids per case."""
    acct = [int(sync_account.enqueue(account="acct-7").id) for _ in range(3)]
    two = [int(two_at_a_time.enqueue(index).id) for index in range(3)]
    erp = [int(call_erp.enqueue(index).id) for index in range(3)]
    claim()
    return {"acct-7": acct, "two": two, "erp": erp}


def hold_fairly(tenant: str = "A", runs: int = 12) -> list[int]:
    """``runs`` of one fair key, one claimed: the claim's gate keeps FAIR_WINDOW due and
    holds back the rest."""
    ids = [int(tenant_job.enqueue(tenant=tenant, index=index).id) for index in range(runs)]
    claim(limit=1, queues=["default"])
    return ids


def held(ids: Sequence[int]) -> list[int]:
    return list(
        Run.objects.filter(pk__in=ids, status=RunStatus.READY)
        .exclude(held_by=None)
        .order_by("id")
        .values_list("id", flat=True)
    )
