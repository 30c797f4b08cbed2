"""The repair of stalled batches: a sealed batch still waiting for members that will never end
(a member deleted by hand, a bug), recounted from its members and finished.

Every final outcome is counted where it lands (``settle.py``), so this finds nothing in a
healthy system; it is cheap for that reason. It looks only at sealed, unfinished batches
older than ``STALLED_AFTER``, a few per pass, going round them all pass after pass. A batch
with a member still active is not stalled (that member's end will count): one indexed
``EXISTS`` says so. Only a batch with none left active is recounted, under its lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count

from ..models import ACTIVE_STATUSES, Batch, Run
from .settle import COUNTERS, finish, locked_batch

logger = logging.getLogger("taskmill.worker")

STALLED_AFTER = timedelta(minutes=1)
PER_PASS = 20


@dataclass(slots=True)
class SweepResult:
    looked_at: int
    repaired: list[int]  # the batches recounted (and finished)
    last_id: int  # where the next pass starts (0: from the first again)


def sweep_stalled(
    database: str, now: datetime, *, after_id: int = 0, limit: int = PER_PASS
) -> SweepResult:
    """Look at up to ``limit`` sealed, unfinished batches with ids above ``after_id``; repair
    those whose members have all ended while their counts say some are pending."""
    candidates = list(
        Batch.objects.using(database)
        .filter(
            finished_at__isnull=True,
            sealed=True,
            created_at__lt=now - STALLED_AFTER,
            pk__gt=after_id,
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    repaired = [batch_id for batch_id in candidates if _stalled(database, batch_id)]
    repaired = [batch_id for batch_id in repaired if _repair(database, batch_id, now)]
    last_id = candidates[-1] if len(candidates) == limit else 0
    return SweepResult(len(candidates), repaired, last_id)


def _stalled(database: str, batch_id: int) -> bool:
    active = Run.objects.using(database).filter(batch_id=batch_id, status__in=ACTIVE_STATUSES)
    return not active.exists()


def _repair(database: str, batch_id: int, now: datetime) -> bool:
    """Recount the batch from its members, under its lock; finish it if none is pending.

    An ended member counted but gone (deleted by hand) keeps its count: the batch's report
    says what happened. A member ended but not counted is counted. ``total`` becomes those
    ended plus those still active."""
    with transaction.atomic(using=database):
        batch = locked_batch(database, batch_id)
        if batch is None or batch.finished_at is not None:
            return False
        by_status = (
            Run.objects.using(database)
            .filter(batch_id=batch_id)
            .order_by()  # no ORDER BY in a GROUP BY
            .values_list("status")
            .annotate(members=Count("pk"))
        )
        found = {counter: 0 for counter in COUNTERS.values()}
        active = 0
        for status, members in by_status:
            if status in COUNTERS:
                found[COUNTERS[status]] += members
            else:
                active += members
        before = (batch.total, batch.succeeded, batch.failed, batch.cancelled)
        for counter, number in found.items():
            setattr(batch, counter, max(getattr(batch, counter), number))
        batch.total = batch.succeeded + batch.failed + batch.cancelled + active
        changed = ["total", *COUNTERS.values()]
        if (batch.total, batch.succeeded, batch.failed, batch.cancelled) == before:
            if batch.pending > 0:
                return False  # the counts agree: a member joined since the look
            changed = []  # agreeing, and nothing pending: only the finish is missing
        logger.warning(
            "Batch %s was stalled: counted %s members (%s/%s/%s ended), found %s "
            "(%s/%s/%s ended, %s active); recounted",
            batch_id,
            *before,
            batch.total,
            batch.succeeded,
            batch.failed,
            batch.cancelled,
            active,
        )
        if batch.pending <= 0:
            changed += finish(database, batch, now)
        batch.save(using=database, update_fields=changed)
    return True
