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
from django.db.models import Exists
from django.utils import timezone

from ..db.errors import is_transient
from ..db.records import ClaimedRun
from ..logs import run_fields
from ..models import LimitStart, Run
from ..status import RunStatus

logger = logging.getLogger("taskmill.worker")

# A start the database did not take is tried again after this long, twice as long each time
# after, up to RETRY_MOST: a cut session is back at once, a restart within a second or two.
RETRY_FIRST = 0.1
RETRY_MOST = 2.0


def counts_starts(run: ClaimedRun) -> bool:
    """Whether ``run``'s start counts for a rate: the gate that let it go recorded one (a
    rate of its task's key or of its queue). Asked of the run, not of the queues' limits as
    this process knows them: a queue with a concurrency limit alone records no start, and
    its runs' bodies were paying two statements each for nothing (bench --only limits)."""
    return run.counts_start


def _write_start(database: str, run: ClaimedRun) -> bool:
    """Mark ``run``'s start begun now, if this attempt still holds the run; return whether
    its body may begin. One statement when it does.

    A run taken away meanwhile (its worker frozen past its lease: rescued, perhaps claimed
    again elsewhere) must not begin here: its start no longer counts (its run left RUNNING,
    or is RUNNING under another attempt with a start of its own), so a body begun now would
    be one start more than the gate let go. A run still ours whose start is no longer there
    to write begins, as before."""
    ours = Run.objects.using(database).filter(
        pk=run.id, status=RunStatus.RUNNING, attempt=run.attempt
    )
    if run.holder is not None:
        ours = ours.filter(worker_id=run.holder)
    written = (
        LimitStart.objects.using(database)
        .filter(Exists(ours), run_id=run.id, begun=False)
        .update(begun=True, started_at=timezone.now())
    )
    if written:
        return True
    if ours.exists():
        return True
    logger.warning(
        "Run %s was taken from this worker before its body began (its lease ran out): "
        "not begun here",
        run.id,
        extra=run_fields(run),
    )
    return False


def begin(database: str, run: ClaimedRun, stop: threading.Event | None = None) -> bool:
    """Write that ``run``'s body begins now (from the thread about to run it); return whether
    it may begin.

    While the database does not take the write (a restart, a cut session), try again until
    it does, or until ``stop`` is set: the run was asked to stop, or its worker fenced itself
    because the database stayed away (its runs may be rescued elsewhere). Then False: the
    body must not run. With no ``stop`` to wait on, or an error that no retry mends (not a
    connection's or a deadlock's), the start stays unwritten and the body runs all the same.
    False too when the run was taken from this attempt before its body began (``_write_start``).
    """
    if not counts_starts(run):
        return True
    delay = RETRY_FIRST
    while True:
        try:
            return _write_start(database, run)
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
