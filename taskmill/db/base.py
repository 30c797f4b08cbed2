"""The contract every database engine fulfils, and what the engines share.

An engine owns the SQL that has to be vendor-specific: the claim (``FOR UPDATE SKIP
LOCKED`` or a single-writer statement), the batched finish with its fencing check, the
wake-up of idle workers, and the DDL of the claim index.  Nothing outside ``taskmill.db``
knows which database it talks to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from django.db import connections, transaction

from ..models import Run
from .inserts import insert_returning_ids
from .leases import LeaseQueries
from .records import (
    CLAIMED_COLUMNS,
    CLAIMED_DATETIME_COLUMNS,
    NEW_RUN_COLUMNS,
    QUEUE_TABLE,
    RUN_TABLE,
    ClaimedRun,
    ClaimRequest,
    HeartbeatReply,
    Landed,
    NewRun,
    Outcome,
    dump_json_or_null,
    load_datetime,
    load_json,
)

__all__ = [
    "CLAIMED_COLUMNS",
    "NEW_RUN_COLUMNS",
    "RUN_TABLE",
    "ClaimRequest",
    "ClaimedRun",
    "Engine",
    "HeartbeatReply",
    "Landed",
    "Listener",
    "NewRun",
    "Outcome",
    "load_datetime",
    "load_json",
]


# claimed_from_row unpacks rows in this order.
assert tuple(f.name for f in fields(ClaimedRun))[: len(CLAIMED_COLUMNS)] == CLAIMED_COLUMNS
assert set(CLAIMED_DATETIME_COLUMNS) == {
    "enqueued_at",
    "run_after",
    "available_at",
    "started_at",
    "last_attempted_at",
}


class Engine(LeaseQueries):
    """Base class: shared helpers and the row-by-row finish that SQLite and MySQL use."""

    vendor = ""
    # Whether the engine can wake idle workers itself (LISTEN/NOTIFY); if not, workers poll.
    pushes_wakeups = False
    # How this database spells "a READY run that is due" / "deferred": the exact terms of
    # the partial indexes (taskmill.models.indexes), so the planner can use them.
    ready_condition = "status = 'READY'"
    due_condition = "status = 'READY' AND due = 1"
    deferred_condition = "status = 'READY' AND due = 0"
    running_condition = "status = 'RUNNING'"
    waiting_condition = "status = 'WAITING'"
    true_literal = "1"

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self):
        return connections[self.alias]

    # -- the protocol -------------------------------------------------------------------

    def insert_runs(self, runs: Sequence[NewRun], wake_queues: set[str]) -> None:
        """Insert new runs (setting their ``pk``) and wake workers serving ``wake_queues``.

        Here (SQLite, MySQL) nothing can wake other processes: their workers poll, so
        ``wake_queues`` only matters to engines that push wake-ups (PostgreSQL).
        """
        if self.connection.features.can_return_rows_from_bulk_insert:  # SQLite, MariaDB
            insert_returning_ids(self.alias, runs)
            return
        # MySQL 8: its multi-row INSERT cannot hand back the ids; the ORM inserts row by row.
        rows = [run.as_model() for run in runs]
        with transaction.atomic(using=self.alias, savepoint=False):
            for row in rows:
                row.save(using=self.alias, force_insert=True)
        for run, row in zip(runs, rows, strict=True):
            run.pk = row.pk

    def claim(
        self,
        *,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_until: datetime,
        queues: Sequence[str] | None,
        exclude_queues: Sequence[str] = (),
        backends: Sequence[str] | None = None,
    ) -> list[ClaimedRun]:
        """Take up to ``limit`` ready runs for ``worker_id``, best first, atomically.

        ``backends``: only runs enqueued through these ``TASKS`` aliases (None: any alias
        whose runs live in this database)."""
        queue_sql, queue_params = self.queue_filter(queues, exclude_queues, backends)
        request = ClaimRequest(worker_id, limit, now, lease_until, queue_sql, queue_params)
        claimed = self.claim_runs(request)
        # RETURNING (or a second statement) does not keep the ORDER BY: sort again.
        claimed.sort(key=ClaimedRun.sort_key)
        return claimed

    def claim_runs(self, request: ClaimRequest) -> list[ClaimedRun]:
        """The engine's claim statement(s): mark the picked runs as held, return them."""
        raise NotImplementedError

    def finish(self, outcomes: Sequence[Outcome]) -> dict[int, Landed]:
        """Write outcomes; return those whose write landed, by run id.

        A write lands only if the row is still RUNNING with the attempt the worker ran:
        a worker presumed dead cannot overwrite what happened after its run was rescued.
        Runs in the caller's transaction if there is one (callbacks and dependents are
        written in the same one), else in its own.
        """
        if not outcomes:
            return {}
        params = [self.finish_params(outcome) for outcome in outcomes]
        landed: list[int] = []
        # No savepoint inside the outcomes' transaction: it fails (and is retried) whole.
        with (
            transaction.atomic(using=self.alias, savepoint=False),
            self.connection.cursor() as cursor,
        ):
            for row in params:
                cursor.execute(FINISH_ROW_SQL, row)
                if cursor.rowcount:
                    landed.append(row[-2])
            return self.landed_rows(cursor, landed)

    def finish_params(self, outcome: Outcome) -> list[Any]:
        status = outcome.status
        return [
            status,
            status,
            status,
            self.adapt_datetime(outcome.finished_at),
            status,
            self.adapt_datetime(outcome.expires_at),
            self.adapt_datetime(outcome.available_at),
            outcome.due,
            dump_json_or_null(outcome.return_value),
            json.dumps(outcome.errors),
            self.adapt_datetime(outcome.started_at),
            self.adapt_datetime(outcome.started_at),
            outcome.run_id,
            outcome.attempt,
        ]

    def landed_rows(self, cursor: Any, ids: Sequence[int]) -> dict[int, Landed]:
        if not ids:
            return {}
        cursor.execute(
            f"SELECT id, attempt, status, has_dependents FROM {RUN_TABLE} "
            f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
            list(ids),
        )
        return {row[0]: Landed(row[0], row[1], row[2], bool(row[3])) for row in cursor.fetchall()}

    def release(self, runs: Sequence[ClaimedRun], *, now: datetime, started: bool) -> int:
        """Put held runs back in the queue (worker shutdown); return how many went back.

        A run that never started is returned as if it had not been claimed; one that
        started keeps its attempt (it did happen) and is ready again at once.
        """
        if not runs:
            return 0
        held = {run.id: run.attempt for run in runs}
        released = 0
        with transaction.atomic(using=self.alias):
            rows = (
                Run.objects.using(self.alias)
                .select_for_update()
                .filter(id__in=list(held), status="RUNNING")
            )
            for row in rows:
                if held[row.id] != row.attempt:
                    continue  # rescued meanwhile: no longer ours to release
                _return_to_queue(row, now, started=started)
                released += 1
        return released

    def release_orphans(self, worker_id: str, held: Sequence[int], *, now: datetime) -> int:
        """Put back runs claimed for ``worker_id`` that it does not hold; return how many.

        A claim whose commit went through but whose reply was lost (the connection dropped)
        leaves runs RUNNING under this worker that it never got: they go back as if never
        claimed, at once, instead of waiting out a lease and coming back as a lost attempt.
        No one else holds their attempt (it was never handed out), so it is taken back.
        """
        rows = Run.objects.using(self.alias).filter(worker_id=worker_id, status="RUNNING")
        if held:
            rows = rows.exclude(id__in=list(held))
        returned = 0
        with transaction.atomic(using=self.alias):
            if self.connection.features.has_select_for_update_skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            for row in rows:
                _return_to_queue(row, now, started=False)
                returned += 1
        return returned

    def stage_due(self, now: datetime) -> int:
        """Mark deferred runs whose time has come as due, so claims see them; return how many.

        Reads only the stage index (deferred READY runs, by available_at): cheap when none is
        due, however many wait for later. Several workers may stage at once; an UPDATE that
        finds a row already staged by another simply leaves it.
        """
        # Literal conditions, not parameters: SQLite uses a partial index only when the query
        # spells out the index's own terms.
        sql = (
            f"UPDATE {RUN_TABLE} SET due = {self.true_literal} "
            f"WHERE {self.deferred_condition} AND available_at <= %s"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [self.adapt_datetime(now)])
            return cursor.rowcount

    def notify(self, queue_name: str) -> None:
        """Wake idle workers of other processes serving ``queue_name`` (at commit, if in a
        transaction). Here, nothing: their workers poll."""

    def start_listener(self, on_wakeup: Callable[[str], None]) -> Listener | None:
        """Start a background listener calling ``on_wakeup(queue)``; None if not supported."""
        return None

    # -- helpers --------------------------------------------------------------------------

    def adapt_datetime(self, value: datetime | None) -> Any:
        # The common case, a UTC datetime for a database that stores UTC (PostgreSQL takes
        # datetimes as they are), without Django's general path: a few per run on SQLite
        # and MySQL. The text is what that path writes.
        if (
            value is not None
            and value.tzinfo is UTC
            and self.vendor != "postgresql"
            and self.connection.timezone is UTC
        ):
            return str(value.replace(tzinfo=None))
        return self.connection.ops.adapt_datetimefield_value(value)

    def queue_filter(
        self,
        queues: Sequence[str] | None,
        exclude: Sequence[str],
        backends: Sequence[str] | None = None,
    ) -> tuple[str, list]:
        """SQL (starting with AND) and params restricting the claim to some queues (and to
        the runs of some ``TASKS`` aliases: two aliases may share a database and its table)."""
        # Paused queues are skipped: a tiny table, read by the claim itself, so a pause
        # holds from the moment it commits.
        sql, params = (
            f" AND queue_name NOT IN (SELECT name FROM {QUEUE_TABLE} WHERE paused = TRUE)",
            [],
        )
        if queues is not None:
            sql += f" AND queue_name IN ({', '.join(['%s'] * len(queues))})"
            params.extend(queues)
        if exclude:
            sql += f" AND queue_name NOT IN ({', '.join(['%s'] * len(exclude))})"
            params.extend(exclude)
        if backends is not None:
            sql += f" AND backend IN ({', '.join(['%s'] * len(backends))})"
            params.extend(backends)
        return sql, params

    def claimed_from_row(self, row: Sequence[Any], claimed_at: datetime) -> ClaimedRun:
        # Positional, in CLAIMED_COLUMNS' order (checked above): called for every run claimed.
        (
            run_id,
            task_path,
            backend,
            queue_name,
            priority,
            args,
            kwargs,
            attempt,
            enqueued_at,
            run_after,
            available_at,
            worker_ids,
            errors,
            options,
            has_dependents,
        ) = row
        return ClaimedRun(
            run_id,
            task_path,
            backend,
            queue_name,
            priority,
            load_json(args),
            load_json(kwargs),
            attempt,
            load_datetime(enqueued_at),
            load_datetime(run_after),
            load_datetime(available_at),
            load_json(worker_ids),
            load_json(errors),
            load_json(options),
            bool(has_dependents),
            claimed_at,
            claimed_at,
        )


def _return_to_queue(row: Run, now: datetime, *, started: bool) -> None:
    """Make a held run READY again; one that never started gives its attempt back."""
    if not started:
        row.attempt -= 1
        row.worker_ids = row.worker_ids[:-1]
        if row.attempt == 0:
            row.started_at = None
            row.last_attempted_at = None
    row.status = "READY"
    row.due = True
    row.worker_id = ""
    row.lease_expires_at = None
    # A mark left by a heartbeat would tell the rescue that the next claim never started.
    row.prefetched = False
    row.available_at = now
    row.save(
        update_fields=[
            "due",
            "attempt",
            "worker_ids",
            "started_at",
            "last_attempted_at",
            "status",
            "worker_id",
            "lease_expires_at",
            "prefetched",
            "available_at",
        ]
    )


# One outcome, fenced. A retry (READY) of a run whose stop was requested meanwhile becomes
# CANCELLED: a stop is final even when the attempt failed on its own first. No assignment
# reads a column assigned before it: MySQL would see the new value.
FINISH_ROW_SQL = f"""
UPDATE {RUN_TABLE}
SET status = CASE WHEN %s <> 'READY' THEN %s WHEN stop_requested THEN 'CANCELLED'
                  ELSE 'READY' END,
    finished_at = CASE WHEN %s <> 'READY' OR stop_requested THEN %s ELSE NULL END,
    expires_at = CASE WHEN %s <> 'READY' OR stop_requested THEN %s ELSE NULL END,
    available_at = COALESCE(%s, available_at),
    due = COALESCE(%s, due),
    return_value = %s,
    errors = %s,
    started_at = COALESCE(%s, CASE WHEN attempt > 1 THEN started_at END),
    last_attempted_at = COALESCE(%s, CASE WHEN attempt > 1 THEN last_attempted_at END),
    worker_id = '',
    lease_expires_at = NULL,
    prefetched = FALSE
WHERE id = %s AND attempt = %s AND status = 'RUNNING'
"""


class Listener:
    """A running wake-up listener; ``stop()`` ends it."""

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError
