"""A rate-limited run's start, written when its body begins: the gate recorded it as let go
and not begun (counted while its run is RUNNING); its true time goes in now, so that a run
claimed at the end of one window and begun late counts in the window it began in.

A body never begins with its start unwritten. A start let go and not begun counts only
while its run is RUNNING (``slots.starts_since``): one whose body ran unwritten would leave
every window the moment its outcome landed, and the gate would let another start take its
place. The long PostgreSQL soak saw it: a worker wrote none of 8 starts while the database
crash-restarted, ran their bodies at once, and the gate let 25 starts into a 5 s window of
a 20/5s rate. So the write is tried again until the database takes it, as a run marked not
started waits for its record (``Executor._record_start``).
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, connections
from django.utils import timezone

from ..db.errors import is_transient
from ..db.records import ClaimedRun
from ..logs import run_fields
from ..models import LimitStart
from .queues import limited

logger = logging.getLogger("taskmill.worker")

# A start the database did not take is tried again after this long, twice as long each time
# after, up to RETRY_MOST: a cut session is back at once, a restart within a second or two.
RETRY_FIRST = 0.1
RETRY_MOST = 2.0


def counts_starts(run: ClaimedRun, database: str, *, fresh: bool = True) -> bool:
    """Whether ``run``'s start counts for a rate. ``fresh=False`` reads no database (an
    event loop may not): what the worker's loop last learnt of the limited queues."""
    queues = limited.queues(database) if fresh else limited.known(database)
    return run.rate_key is not None or run.queue_name in queues


def begin(database: str, run: ClaimedRun, stop: threading.Event | None = None) -> bool:
    """Write that ``run``'s body begins now (from the thread about to run it); return whether
    it may begin.

    While the database does not take the write (a restart, a cut session), try again until
    it does, or until ``stop`` is set: the run was asked to stop, or its worker fenced itself
    because the database stayed away (its runs may be rescued elsewhere). Then False: the
    body must not run. With no ``stop`` to wait on, or an error that no retry mends (not a
    connection's or a deadlock's), the start stays unwritten and the body runs all the same.
    """
    if not counts_starts(run, database):
        return True
    delay = RETRY_FIRST
    while True:
        try:
            LimitStart.objects.using(database).filter(run_id=run.id, begun=False).update(
                begun=True, started_at=timezone.now()
            )
            return True
        except DatabaseError as exc:
            logger.warning(
                "Could not write the start of run %s for its rate: %s",
                run.id,
                exc,
                extra=run_fields(run),
            )
            if stop is None or not (is_transient(exc) or stop.is_set()):
                return True
            # A broken connection is not reused: the next try connects afresh.
            connections[database].close_if_unusable_or_obsolete()
        if stop.wait(delay):
            return False
        delay = min(delay * 2, RETRY_MOST)
