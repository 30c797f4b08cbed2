"""Counting a batch's members as they end, and finishing the batch: in the transaction that
writes a member's final outcome (``followups.settle`` calls ``settle_members``).

Why it fires each callback exactly once: a member's outcome lands once (the finish is fenced
by its attempt, so a stale attempt's write counts nothing), and the counters change under
the batch row's lock, in the transaction that lands the outcome. So whichever transaction
brings ``pending`` to zero on a sealed batch sees it alone, and enqueues the callbacks in
that same transaction: two members ending in the same instant on two workers are counted
one after the other, and only the second finishes the batch. A retry (a member READY again)
is not an end, so a member that fails and then succeeds counts as a success.

Batches are locked in id order, after everything else ``settle`` locks (the rollups, the
limits' keys): every transaction takes them in one order.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.utils import timezone

from .. import registry
from ..compat import InvalidTask
from ..db import get_engine
from ..db.records import Landed
from ..models import Batch, RunStatus
from .membership import outside_batch

logger = logging.getLogger("taskmill.worker")

# The final statuses, and the counter each ends in. CANCELLED counts apart from FAILED, and
# both are failures for the callbacks (on_failure).
COUNTERS = {
    RunStatus.SUCCESSFUL: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}


def settle_members(database: str, landed: Iterable[Landed]) -> None:
    """Count the final outcomes among ``landed`` in their batches, and finish each sealed
    batch left with no pending member. Call in the transaction that wrote the outcomes."""
    ended: dict[int, Counter[str]] = {}
    for row in landed:
        if row.batch_id is not None and row.status in COUNTERS:
            ended.setdefault(row.batch_id, Counter())[COUNTERS[row.status]] += 1
    if not ended:
        return  # the common case: no member of any batch ended here
    for batch_id in sorted(ended):
        counts = ended[batch_id]
        counted = get_engine(database).add_to_batch(batch_id, dict(counts))
        if counted is None:
            # Gone, or a member run again by hand (taskmill.retry) after its batch finished:
            # the batch's report stands, its callbacks ran.
            logger.info(
                "Batch %s finished (or was deleted) before %s of its member(s) ended again; "
                "not counted",
                batch_id,
                counts.total(),
            )
        elif counted[0] and counted[1] <= 0:
            # Sealed, nothing pending: its row is locked by the count, read it whole once.
            batch = Batch.objects.using(database).get(pk=batch_id)
            batch.save(using=database, update_fields=finish(database, batch, timezone.now()))


def locked_batches(database: str, ids: Iterable[int]) -> list[Batch]:
    """The batches ``ids`` (those that still exist), locked until the transaction ends, in
    id order: every transaction that locks several takes them in the same order."""
    query = Batch.objects.using(database).select_for_update().filter(pk__in=sorted(ids))
    return list(query.order_by("pk"))


def locked_batch(database: str, batch_id: int) -> Batch | None:
    found = locked_batches(database, [batch_id])
    return found[0] if found else None


def finish(database: str, batch: Batch, now: datetime) -> list[str]:
    """Mark ``batch`` (locked, sealed, nothing pending) finished and enqueue its callbacks:
    ``on_finish``, then ``on_success`` if every member succeeded, else ``on_failure``.
    Returns the fields changed, for the caller's save."""
    if batch.pending < 0:
        logger.error(
            "Batch %s counted more ended members than it has (%s of %s); finishing it",
            batch.pk,
            batch.succeeded + batch.failed + batch.cancelled,
            batch.total,
        )
    succeeded = batch.failed == 0 and batch.cancelled == 0
    paths = [batch.on_finish, batch.on_success if succeeded else batch.on_failure]
    callback_runs = []
    with outside_batch():
        for path in paths:
            if path:
                run_id = _enqueue_callback(path, batch)
                if run_id is not None:
                    callback_runs.append(run_id)
    batch.finished_at = now
    batch.callback_runs = callback_runs
    logger.info(
        "Batch %s finished: %s succeeded, %s failed, %s cancelled",
        batch.pk,
        batch.succeeded,
        batch.failed,
        batch.cancelled,
    )
    return ["finished_at", "callback_runs"]


def _enqueue_callback(path: str, batch: Batch) -> int | None:
    """Enqueue the callback ``path`` with the batch's id; its run id, or None if it cannot be
    (its task is gone from the code, or refuses the enqueue). The batch finishes all the
    same: its members' outcomes stand, and a callback that cannot run must not hold them
    back for ever."""
    try:
        callback = registry.resolve(path)
        result = callback.enqueue(str(batch.pk))
    except InvalidTask as exc:  # raised before anything was written
        logger.error("Callback %s of batch %s cannot be enqueued: %s", path, batch.pk, exc)
        return None
    return int(result.id)


def uncount_member(database: str, batch_id: int, status: str) -> None:
    """A member that had ended with ``status`` runs again (``taskmill.retry``): pending once
    more, so its next outcome is counted instead of this one. Call in the transaction that
    makes it READY, after locking its row. A finished batch is left as it is."""
    counter = COUNTERS.get(status)
    batch = locked_batch(database, batch_id)
    if counter is None or batch is None or batch.finished_at is not None:
        return
    setattr(batch, counter, max(0, getattr(batch, counter) - 1))
    batch.save(using=database, update_fields=[counter])
