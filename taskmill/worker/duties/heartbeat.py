"""The heartbeat: renew this worker's leases, learn of stop and shutdown requests.

It runs on a thread of its own with its own connection, so a busy claim loop or an event
loop full of tasks never starves it (pgqueuer's duplicate runs came from that). If it keeps
failing for most of a lease, the worker fences itself: it stops claiming, kills its child
processes and flags its task threads, because other workers are about to rescue its runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections
from django.utils import timezone

from ...conf import setting
from ...logs import run_fields
from ...models import Worker as WorkerRow
from .base import Duty

if TYPE_CHECKING:
    from ...db import ClaimedRun, Engine
    from ..heartbeat_port import HeartbeatPort
    from ..loop import WorkerOptions

logger = logging.getLogger("taskmill.worker")

# Fence once heartbeats have failed for this share of a lease.
SELF_FENCE_AFTER = 0.75


class StartRecorder:
    """Records, before it starts, that a run a heartbeat marked as not started is starting.

    Task threads call it; it has a connection of its own, kept open, because a task
    thread's connection is closed after every task (Django's close_old_connections) and
    reconnecting for each record would cost more than the task.
    """

    def __init__(self, database: str, engine: Engine) -> None:
        self.database = database
        self.engine = engine
        self._lock = threading.Lock()
        self._connection: Any = None

    def __call__(self, run: ClaimedRun) -> bool | None:
        """Record the start: True when recorded, False when the run is no longer this
        worker's to start, None when the database did not answer (the caller tries again)."""
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = connections.create_connection(self.database)
                    self._connection.inc_thread_sharing()  # task threads take turns
                return self.engine.unmark_prefetched(
                    run.id, run.attempt, timezone.now(), self._connection, run.holder
                )
            except DatabaseError as exc:
                logger.warning(
                    "Could not record that run %s started: %s", run.id, exc, extra=run_fields(run)
                )
                self.close()
                return None

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DatabaseError):  # a dead connection cannot close cleanly
                self._connection.close()
            self._connection = None


class Heartbeat(Duty):
    """Beats for one worker, which it sees only through ``port`` (the few calls it needs)."""

    name = "heartbeat"

    def __init__(
        self, port: HeartbeatPort, worker_id: str, options: WorkerOptions, engine: Engine
    ) -> None:
        self.port = port
        self.worker_id = worker_id
        self.options = options
        self.engine = engine
        self.interval = float(setting("TASKMILL_HEARTBEAT_INTERVAL"))
        self.lease = float(setting("TASKMILL_LEASE"))
        self.last_success = time.monotonic()
        self.back_in_touch_at = 0.0  # when a silence last ended (time.monotonic())
        self.fenced = False
        self.registered = False

    def register(self, now: datetime) -> None:
        """Write this worker's row (again, if it was pruned while we were away)."""
        options = self.options
        WorkerRow.objects.using(options.database).update_or_create(
            pk=self.worker_id,
            defaults={
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "label": options.label[:100],
                "database": options.database,
                "queues": list(options.queues) if options.queues is not None else None,
                "exclude_queues": list(options.exclude_queues),
                "concurrency": options.concurrency,
                "started_at": now,
                "last_heartbeat_at": now,
                "state": WorkerRow.State.RUNNING,
            },
        )
        self.registered = True

    def run(self, now: datetime) -> float:
        try:
            self.beat(now)
        except DatabaseError:
            self.check_fence()
            raise
        return self.interval

    def beat(self, now: datetime) -> None:
        port = self.port
        if not self.registered:
            self.register(now)
        held, waiting, atomic = port.held_runs()
        written = waiting  # if the write fails midway, assume the marks may be there
        try:
            reply = self.engine.heartbeat(
                worker_id=self.worker_id,
                held=held,
                waiting=waiting,
                skip=atomic,
                now=now,
                lease_until=now + timedelta(seconds=self.lease),
                worker_fields={
                    "running": sorted(set(held) - waiting)[:1000],
                    "processed": port.processed,
                    "state": (
                        WorkerRow.State.STOPPING if port.stopping else WorkerRow.State.RUNNING
                    ),
                },
            )
            written = waiting & reply.renewed
        finally:
            port.marks_written(written)
        now = time.monotonic()
        if now - self.last_success > self.silence:
            self.back_in_touch_at = now  # runs queued before this must ask before starting
        self.last_success = now
        if self.fenced:
            logger.warning("Worker %s reached the database again; claiming again", self.worker_id)
            self.fenced = False
            port.unfence()
        # A run written back while this heartbeat ran is not lost: the worker checks each
        # against what it still holds, attempt included.
        port.stop_runs(reply.lost, held, "no longer this worker's (rescued or cancelled)")
        port.stop_runs(reply.stop_requested, held, "a stop was requested")
        if reply.shutdown_requested and not port.stopping:
            logger.warning("Worker %s asked to shut down", self.worker_id)
            port.request_stop()

    def out_of_touch(self, since: float | None = None) -> bool:
        """No heartbeat has landed for longer than beating takes (two intervals, or half a
        lease): the process was frozen or cut off, and its runs may be someone else's now.
        With ``since`` (time.monotonic()): also when such a silence ended after it."""
        if time.monotonic() - self.last_success > self.silence:
            return True
        return since is not None and self.back_in_touch_at > since

    @property
    def silence(self) -> float:
        """Seconds without a heartbeat that mean the process was out of touch."""
        return max(2 * self.interval, 0.5 * self.lease)

    def check_fence(self) -> None:
        silent = time.monotonic() - self.last_success
        if not self.fenced and silent > SELF_FENCE_AFTER * self.lease:
            self.fenced = True
            logger.error(
                "Worker %s: no heartbeat for %.0fs of a %.0fs lease: fencing itself (no claims, "
                "children killed, tasks asked to stop) before its runs are rescued elsewhere",
                self.worker_id,
                silent,
                self.lease,
            )
            self.port.fence()

    def unregister(self) -> None:
        try:
            WorkerRow.objects.using(self.options.database).filter(pk=self.worker_id).update(
                state=WorkerRow.State.STOPPED, running=[], processed=self.port.processed
            )
        except DatabaseError as exc:
            logger.warning("Could not mark worker %s stopped: %s", self.worker_id, exc)
