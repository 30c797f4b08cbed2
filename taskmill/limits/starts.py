"""A rate-limited run's start, written when its body begins: the gate recorded it as let go
and not begun (counted in every window meanwhile); its true time goes in now, so that a run
claimed at the end of one window and begun late counts in the window it began in."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.utils import timezone

from ..db.records import ClaimedRun
from ..logs import run_fields
from ..models import LimitStart
from .queues import limited

logger = logging.getLogger("taskmill.worker")


def counts_starts(run: ClaimedRun, database: str, *, fresh: bool = True) -> bool:
    """Whether ``run``'s start counts for a rate. ``fresh=False`` reads no database (an
    event loop may not): what the worker's loop last learnt of the limited queues."""
    queues = limited.queues(database) if fresh else limited.known(database)
    return run.rate_key is not None or run.queue_name in queues


def begin(database: str, run: ClaimedRun) -> None:
    """Write that ``run``'s body begins now (from the thread about to run it)."""
    if not counts_starts(run, database):
        return
    try:
        LimitStart.objects.using(database).filter(run_id=run.id, begun=False).update(
            begun=True, started_at=timezone.now()
        )
    except DatabaseError as exc:
        # Left not begun, it counts in every window until it is stale: fewer starts, never
        # more. The body runs all the same.
        logger.warning(
            "Could not write the start of run %s for its rate: %s",
            run.id,
            exc,
            extra=run_fields(run),
        )
