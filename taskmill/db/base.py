"""The contract every database engine fulfils, and what the engines share.

An engine owns the SQL that has to be vendor-specific: the claim (``FOR UPDATE SKIP
LOCKED`` or a single-writer statement), the batched finish with its fencing check, the
wake-up of idle workers, and the DDL of the claim index.  Nothing outside ``taskmill.db``
knows which database it talks to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from django.db import connections, transaction
from django.utils.dateparse import parse_datetime

from ..models import Queue, Run

RUN_TABLE = Run._meta.db_table
QUEUE_TABLE = Queue._meta.db_table

# Columns a claim hands back, in this order, on every engine.
CLAIMED_COLUMNS = (
    "id",
    "task_path",
    "backend",
    "queue_name",
    "priority",
    "args",
    "kwargs",
    "attempt",
    "enqueued_at",
    "run_after",
    "available_at",
    "started_at",
    "last_attempted_at",
    "worker_ids",
    "errors",
    "options",
    "has_dependents",
)


@dataclass(slots=True)
class NewRun:
    """A run about to be inserted: what the enqueue decides, and no model instance.

    Building Django model instances was most of a bulk enqueue's time; engines insert
    these directly (PostgreSQL) or turn them into ``Run`` rows (the ORM path).
    """

    task_path: str
    backend: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_at: datetime
    run_after: datetime | None
    available_at: datetime
    due: bool = True  # False when available_at is later than now (see Run.due)
    status: str = "READY"  # WAITING when it depends on runs not yet successful
    unique_key: str | None = None
    options: dict[str, Any] | None = None  # per-call options (Task.stored_options)
    extra: dict[str, Any] = field(default_factory=dict)  # further columns (the scheduler's)
    pk: int | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.extra[name]
        except KeyError:
            raise AttributeError(name) from None

    def column_values(self) -> dict[str, Any]:
        """Model attribute name -> value, for every column this run sets."""
        values = {name: getattr(self, name) for name in NEW_RUN_COLUMNS}
        values.update(self.extra)
        return values

    def as_model(self) -> Run:
        return Run(**self.column_values())


# NewRun's own fields are Run columns of the same names; ``extra`` and ``pk`` are not.
NEW_RUN_COLUMNS = tuple(f.name for f in fields(NewRun) if f.name not in {"extra", "pk"})


@dataclass(slots=True)
class ClaimedRun:
    """A run this worker holds: the row as it is after the claim."""

    id: int
    task_path: str
    backend: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    enqueued_at: datetime
    run_after: datetime | None
    available_at: datetime
    started_at: datetime | None
    last_attempted_at: datetime | None
    worker_ids: list[str]
    errors: list[dict[str, str]]
    options: dict[str, Any] | None = None
    has_dependents: bool = False

    @property
    def pk(self) -> int:
        return self.id

    def sort_key(self) -> tuple[int, datetime, int]:
        return (-self.priority, self.available_at, self.id)


@dataclass(slots=True, frozen=True)
class ClaimRequest:
    """What a claim asks for, with the queue restriction already as SQL (``AND ...``)."""

    worker_id: str
    limit: int
    now: datetime
    lease_until: datetime
    queue_sql: str
    queue_params: list[str]


@dataclass(slots=True)
class Outcome:
    """How one attempt ended, as the worker will write it.

    ``status`` is SUCCESSFUL, FAILED or CANCELLED (final), or READY: a retry, due again at
    ``available_at``. A retry of a run whose stop was requested meanwhile is written as
    CANCELLED instead (the statement checks the row's flag).
    """

    run_id: int
    attempt: int  # the fencing token
    status: str
    finished_at: datetime  # when the attempt ended
    return_value: Any = None
    errors: list[dict[str, str]] = field(default_factory=list)  # the run's full error list
    available_at: datetime | None = None  # retries: when the next attempt may start
    expires_at: datetime | None = None  # final outcomes: when the run may be pruned

    @property
    def due(self) -> bool | None:
        if self.available_at is None:
            return None
        return self.available_at <= self.finished_at


@dataclass(slots=True, frozen=True)
class Landed:
    """An outcome the database accepted, with the status it was written as."""

    run_id: int
    status: str
    has_dependents: bool


class Engine:
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
        rows = [run.as_model() for run in runs]
        if len(rows) == 1:
            rows[0].save(using=self.alias, force_insert=True)
        else:
            with transaction.atomic(using=self.alias):
                if self.connection.features.can_return_rows_from_bulk_insert:
                    Run.objects.using(self.alias).bulk_create(rows)
                else:  # MySQL 8 cannot hand back the ids of a multi-row INSERT
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
    ) -> list[ClaimedRun]:
        """Take up to ``limit`` ready runs for ``worker_id``, best first, atomically."""
        queue_sql, queue_params = self.queue_filter(queues, exclude_queues)
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
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
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
            outcome.run_id,
            outcome.attempt,
        ]

    def landed_rows(self, cursor: Any, ids: Sequence[int]) -> dict[int, Landed]:
        if not ids:
            return {}
        cursor.execute(
            f"SELECT id, status, has_dependents FROM {RUN_TABLE} "
            f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
            list(ids),
        )
        return {row[0]: Landed(row[0], row[1], bool(row[2])) for row in cursor.fetchall()}

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
                        "available_at",
                    ]
                )
                released += 1
        return released

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

    # How this database locks a row it read (SQLite locks the whole database on write).
    for_update = " FOR UPDATE"

    def lock_attempt(self, run_id: int, attempt: int) -> bool:
        """Lock the run's row if it still holds ``attempt``, RUNNING (atomic tasks)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {RUN_TABLE} WHERE id = %s AND attempt = %s "
                f"AND status = 'RUNNING'{self.for_update}",
                [run_id, attempt],
            )
            return cursor.fetchone() is not None

    # -- leases ---------------------------------------------------------------------------

    # Locking rows others may hold: skip them rather than wait (SQLite: whole-database lock).
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def heartbeat(
        self,
        *,
        worker_id: str,
        held: dict[int, int],
        waiting: set[int],
        skip: set[int],
        now: datetime,
        lease_until: datetime,
        worker_fields: dict[str, Any],
    ) -> HeartbeatReply:
        """Renew the leases of the runs this worker holds (id -> attempt).

        Single statements in autocommit, no transaction: a worker frozen (SIGSTOP, a long
        pause) between two of them holds no lock that would keep others from rescuing its
        runs. A row still RUNNING with our attempt is renewed; one that is not (rescued,
        cancelled) is lost to us. ``skip`` are our atomic tasks' rows, locked by their own
        transactions: not touched (the rescue passes over locked rows). ``waiting``
        (claimed, not started) are marked prefetched, so that a rescue returns them
        without a lost attempt.
        """
        from ..models import Queue, Worker

        reply = HeartbeatReply(set(), set(), set(), False, set())
        renew = {run_id: attempt for run_id, attempt in held.items() if run_id not in skip}
        with self.connection.cursor() as cursor:
            if renew:
                marked = sorted(set(renew) & waiting) or [0]
                pairs = ", ".join(["(%s, %s)"] * len(renew))
                cursor.execute(
                    f"UPDATE {RUN_TABLE} SET lease_expires_at = %s, prefetched = CASE "
                    f"WHEN id IN ({', '.join(['%s'] * len(marked))}) THEN TRUE ELSE FALSE END "
                    f"WHERE (id, attempt) IN ({pairs}) AND worker_id = %s "
                    "AND status = 'RUNNING'",
                    [
                        self.adapt_datetime(lease_until),
                        *marked,
                        *(value for pair in renew.items() for value in pair),
                        worker_id,
                    ],
                )
            if held:
                ids = list(held)
                cursor.execute(
                    f"SELECT id, attempt, status, worker_id, stop_requested FROM {RUN_TABLE} "
                    f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
                    ids,
                )
                for run_id, attempt, status, owner, stop in cursor.fetchall():
                    if status == "RUNNING" and attempt == held[run_id] and owner == worker_id:
                        if run_id in renew:
                            reply.renewed.add(run_id)
                        if stop:
                            reply.stop_requested.add(run_id)
                    else:
                        reply.lost.add(run_id)
        workers = Worker.objects.using(self.alias)
        if workers.filter(pk=worker_id).update(last_heartbeat_at=now, **worker_fields):
            reply.shutdown_requested = bool(
                workers.filter(pk=worker_id).values_list("shutdown_requested", flat=True).first()
            )
        reply.paused_queues = set(
            Queue.objects.using(self.alias).filter(paused=True).values_list("name", flat=True)
        )
        return reply

    def unmark_prefetched(self, run_id: int, attempt: int) -> None:
        """A run the last heartbeat marked as not started is starting now."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {RUN_TABLE} SET prefetched = FALSE WHERE id = %s AND attempt = %s",
                [run_id, attempt],
            )

    def expired_runs(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """RUNNING runs whose lease ran out, locked for the rescuer (call in a transaction).

        Reads the running-runs index (few rows) and checks the lease on each."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, attempt, task_path, queue_name, worker_id, prefetched, "
                f"stop_requested, errors, worker_ids, options FROM {RUN_TABLE} "
                f"WHERE {self.running_condition} AND lease_expires_at < %s "
                f"ORDER BY id LIMIT %s{self.skip_locked}",
                [self.adapt_datetime(now), limit],
            )
            columns = [column[0] for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            for name in ("errors", "worker_ids", "options"):
                row[name] = load_json(row[name])
            row["prefetched"] = bool(row["prefetched"])
            row["stop_requested"] = bool(row["stop_requested"])
        return rows

    def rescue(self, run_id: int, attempt: int, now: datetime, values: dict[str, Any]) -> bool:
        """Write a rescued run's new state; only if it still holds ``attempt``, RUNNING, with
        its lease expired (re-checked here: a stale read must never revert a finished run)."""
        assignments = ", ".join(f"{name} = %s" for name in values)
        params = [
            json.dumps(value) if isinstance(value, list | dict) else self.adapt_value(value)
            for value in values.values()
        ]
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {RUN_TABLE} SET {assignments} WHERE id = %s AND attempt = %s "
                "AND status = 'RUNNING' AND lease_expires_at < %s",
                [*params, run_id, attempt, self.adapt_datetime(now)],
            )
            return cursor.rowcount == 1

    def adapt_value(self, value: Any) -> Any:
        return self.adapt_datetime(value) if isinstance(value, datetime) else value

    def notify(self, queue_name: str) -> None:
        """Wake idle workers of other processes serving ``queue_name`` (at commit, if in a
        transaction). Here, nothing: their workers poll."""

    def start_listener(self, on_wakeup: Callable[[str], None]) -> Listener | None:
        """Start a background listener calling ``on_wakeup(queue)``; None if not supported."""
        return None

    # -- helpers --------------------------------------------------------------------------

    def adapt_datetime(self, value: datetime | None) -> Any:
        return self.connection.ops.adapt_datetimefield_value(value)

    def queue_filter(
        self, queues: Sequence[str] | None, exclude: Sequence[str]
    ) -> tuple[str, list]:
        """SQL (starting with AND) and params restricting the claim to some queues."""
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
        return sql, params

    def claimed_from_row(self, row: Sequence[Any]) -> ClaimedRun:
        values = dict(zip(CLAIMED_COLUMNS, row, strict=True))
        for name in ("args", "kwargs", "worker_ids", "errors", "options"):
            values[name] = load_json(values[name])
        values["has_dependents"] = bool(values["has_dependents"])
        for name in ("enqueued_at", "run_after", "available_at", "started_at", "last_attempted_at"):
            values[name] = load_datetime(values[name])
        return ClaimedRun(**values)


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
    worker_id = '',
    lease_expires_at = NULL,
    prefetched = FALSE
WHERE id = %s AND attempt = %s AND status = 'RUNNING'
"""


class Listener:
    """A running wake-up listener; ``stop()`` ends it."""

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def load_json(value: Any) -> Any:
    # Raw cursors return JSON columns as text on SQLite and MySQL, decoded on PostgreSQL.
    return json.loads(value) if isinstance(value, str | bytes) else value


def dump_json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def load_datetime(value: Any) -> datetime | None:
    # Raw cursors return datetimes as text on SQLite, naive UTC on MySQL.
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


@dataclass(slots=True)
class HeartbeatReply:
    """What one heartbeat learned."""

    renewed: set[int]
    lost: set[int]  # no longer ours: drop their outcomes, stop their attempts
    stop_requested: set[int]
    shutdown_requested: bool
    paused_queues: set[str]
