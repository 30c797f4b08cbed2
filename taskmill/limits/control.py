"""Changing a queue's limits at run time (``set_queue_limits``, the admin's Queues page)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import gate, slots
from .queues import QueueLimits, configured_limits, limited, row_limits
from .rates import Rate


def change_queue_limits(
    database: str,
    queue: str,
    *,
    concurrency_limit: int | None,
    rate: Rate | None,
    keep_concurrency: bool,
    keep_rate: bool,
    reset: bool,
) -> QueueLimits:
    """Write the queue's limits in its row (locked, as every gate locks it) and let go at
    once what a raised limit makes room for; return the limits now in force."""
    configured = configured_limits(database)
    with transaction.atomic(using=database):
        row = slots.lock_queues(database, [queue])[queue]
        if reset:
            row.limits_set_at = None
            row.concurrency_limit = row.rate_limit = None
        else:
            current = row_limits(row, configured)
            concurrency = current.concurrency_limit if keep_concurrency else concurrency_limit
            rate = current.rate if keep_rate else rate
            row.concurrency_limit = concurrency
            row.rate_limit = None if rate is None else str(rate)
            row.limits_set_at = timezone.now()
        row.save(using=database, update_fields=["concurrency_limit", "rate_limit", "limits_set_at"])
        # Every worker learns within queues.REFRESH_SECONDS; this process at once.
        limited.forget()
        gate.settle_slots(database, (), [f"queue:{queue}"], also_queues={queue})
        return row_limits(row, configured)
