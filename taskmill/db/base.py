"""What the engines share: the claim's frame, release, staging, the leases' SQL
(``leases.py``), the rollups' upsert, the ORM insert; each engine adds its own claim and finish.

The contract they fulfil, with what each operation guarantees, is ``contract.Engine``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from ..models import Run
from ..status import RunStatus
from . import batch_counts, stats
from .contract import Engine, Listener
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
    load_datetime,
    load_json,
)

__all__ = [
    "CLAIMED_COLUMNS",
    "NEW_RUN_COLUMNS",
    "RUN_TABLE",
    "BaseEngine",
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


# Queues read per task path at most (queue_names): a table of forged rows is not walked whole.
QUEUES_PER_PATH = 1000


class BaseEngine(LeaseQueries, Engine):
    """The shared part of every engine; each writes its own ``claim_runs`` and ``finish``
    (one batch statement or two: the finish's SQL is shared, ``finish_sql.py``)."""

    vendor = ""
    skips_locked_rows = True  # all but SQLite
    # The literal a boolean column is set to (stage_due spells the index's terms).
    true_literal = "1"

    # -- the protocol -------------------------------------------------------------------

    def insert_runs(self, runs: Sequence[NewRun], wake_queues: set[str]) -> None:
        """Multi-row INSERT ... RETURNING where the database has it, else the ORM row by row.

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
        freeing: Sequence[str] = (),
    ) -> list[ClaimedRun]:
        """The filters as SQL, the engine's statement(s) (``claim_runs``), the order again."""
        queue_sql, queue_params = self.queue_filter(queues, exclude_queues, backends, freeing)
        request = ClaimRequest(worker_id, limit, now, lease_until, queue_sql, queue_params)
        claimed = self.claim_runs(request)
        # RETURNING (or a second statement) does not keep the ORDER BY: sort again.
        claimed.sort(key=ClaimedRun.sort_key)
        return claimed

    def any_claimable(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None,
        exclude_queues: Sequence[str] = (),
        backends: Sequence[str] | None = None,
    ) -> bool:
        queue_sql, queue_params = self.queue_filter(queues, exclude_queues, backends)
        sql = (
            f"SELECT 1 FROM {RUN_TABLE} WHERE {self.due_condition} "
            f"AND available_at <= %s{queue_sql} LIMIT 1"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [self.adapt_datetime(now), *queue_params])
            return cursor.fetchone() is not None

    @abstractmethod
    def claim_runs(self, request: ClaimRequest) -> list[ClaimedRun]:
        """The engine's claim statement(s): mark the picked runs as held, return them."""

    def release(self, runs: Sequence[ClaimedRun], *, now: datetime, started: bool) -> int:
        """Put held runs back in the queue (worker shutdown); return how many went back.

        A run that never started is returned as if it had not been claimed; one that
        started keeps its attempt (it did happen) and is ready again at once.
        """
        if not runs:
            return 0
        held = {run.id: (run.attempt, run.holder) for run in runs}
        released = 0
        with transaction.atomic(using=self.alias):
            rows = (
                Run.objects.using(self.alias)
                .select_for_update()
                .filter(id__in=list(held), status=RunStatus.RUNNING)
            )
            for row in rows:
                attempt, holder = held[row.id]
                if attempt != row.attempt or holder not in (None, row.worker_id):
                    continue  # rescued meanwhile (claimed again, perhaps under that attempt)
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
        rows = Run.objects.using(self.alias).filter(worker_id=worker_id, status=RunStatus.RUNNING)
        if held:
            rows = rows.exclude(id__in=list(held))
        returned = 0
        with transaction.atomic(using=self.alias):
            for row in self.lock_skipping_locked(rows):
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
            f"WHERE {self.staging_condition} AND available_at <= %s"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [self.adapt_datetime(now)])
            return cursor.rowcount

    def add_stats(self, ended: Iterable[stats.Ended]) -> None:
        ended = list(ended)
        if not ended:
            return
        adapt = self.connection.ops.adapt_datetimefield_value
        rows = None
        with self.connection.cursor() as cursor:
            for table, period_column, period in stats.TABLES:
                # Each table's rows from the finer one's (minutes fold into hours): one pass
                # over the attempts, not one per table.
                rows = stats.rollup(ended, period) if rows is None else stats.coarser(rows, period)
                sql = self.upsert_adding_sql(table, (period_column, *stats.KEY_COLUMNS))
                cursor.executemany(sql, [[adapt(row.start), *row.values()[1:]] for row in rows])

    def cumulative_stats(self) -> dict[tuple[str, str, str], dict[str, float]]:
        with self.connection.cursor() as cursor:
            cursor.execute(stats.cumulative_sql(self.connection.ops.quote_name))
            return stats.cumulative_rows(cursor.fetchall())

    def add_to_batch(self, batch_id: int, counts: dict[str, int]) -> tuple[bool, int] | None:
        if not self.updates_returning:  # lock the row, then write its new counts
            return batch_counts.add_locked(self.alias, batch_id, counts)
        with self.connection.cursor() as cursor:
            cursor.execute(
                batch_counts.add_returning_sql(self.connection.ops.quote_name, list(counts)),
                [*counts.values(), batch_id],
            )
            row = cursor.fetchone()
        return None if row is None else (bool(row[0]), row[1])

    def add_totals(self, rows: Sequence[stats.StatsRow]) -> None:
        """Add ``rows`` (no period: ``stats.fold_hours``) to the totals the pruner keeps of
        the hours it deletes, in key order."""
        if not rows:
            return
        sql = self.upsert_adding_sql(stats.TOTALS_TABLE, stats.KEY_COLUMNS)
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, [row.values()[1:] for row in rows])

    def upsert_adding_sql(self, table: str, keys: tuple[str, ...]) -> str:
        """INSERT a rollup row (its ``keys``, then ``stats.SUM_COLUMNS``), or add its sums to
        the row with the same keys. PostgreSQL and SQLite speak the same upsert."""
        cached = _UPSERTS.get((type(self), table))
        if cached is None:
            quote = self.connection.ops.quote_name
            updates = ", ".join(
                f"{quote(c)} = {quote(table)}.{quote(c)} + excluded.{quote(c)}"
                for c in stats.SUM_COLUMNS
            )
            conflict = ", ".join(quote(c) for c in keys)
            cached = _UPSERTS[type(self), table] = (
                f"{self.insert_rollup_sql(table, keys)} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
            )
        return cached

    def insert_rollup_sql(self, table: str, keys: tuple[str, ...]) -> str:
        quote = self.connection.ops.quote_name
        columns = [*keys, *stats.SUM_COLUMNS]
        return (
            f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )

    def task_paths(self, after: str | None, limit: int) -> list[str]:
        # PostgreSQL and SQLite have no skip scan of their own for DISTINCT: a recursive query
        # asks the index for the smallest path above the last, once per path. ``depth``
        # bounds the recursion (``limit``).
        start = "" if after is None else "WHERE task_path > %s"
        sql = f"""
            WITH RECURSIVE paths (task_path, depth) AS (
                SELECT MIN(task_path), 1 FROM {RUN_TABLE} {start}
                UNION ALL
                SELECT (SELECT MIN(later.task_path) FROM {RUN_TABLE} later
                        WHERE later.task_path > paths.task_path),
                       paths.depth + 1
                FROM paths WHERE paths.task_path IS NOT NULL AND paths.depth < %s
            )
            SELECT task_path FROM paths WHERE task_path IS NOT NULL ORDER BY depth"""
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [*([] if after is None else [after]), int(limit)])
            return [row[0] for row in cursor.fetchall()]

    def queue_names(self, task_paths: Sequence[str]) -> set[str]:
        # The same recursive probe as task_paths, once per path: the smallest queue above
        # the last within the path, through the (task_path, queue_name, id) index. Paths go
        # in chunks so that a statement's parameters stay few.
        found: set[str] = set()
        for start in range(0, len(task_paths), 200):
            chunk = list(task_paths[start : start + 200])
            values = ", ".join(["(%s)"] * len(chunk))
            sql = f"""
                WITH RECURSIVE paths (task_path) AS (VALUES {values}),
                pairs (task_path, queue_name, depth) AS (
                    SELECT paths.task_path,
                           (SELECT MIN(r.queue_name) FROM {RUN_TABLE} r
                            WHERE r.task_path = paths.task_path), 1
                    FROM paths
                    UNION ALL
                    SELECT pairs.task_path,
                           (SELECT MIN(r.queue_name) FROM {RUN_TABLE} r
                            WHERE r.task_path = pairs.task_path
                              AND r.queue_name > pairs.queue_name),
                           pairs.depth + 1
                    FROM pairs WHERE pairs.queue_name IS NOT NULL AND pairs.depth < %s
                )
                SELECT DISTINCT queue_name FROM pairs WHERE queue_name IS NOT NULL"""
            with self.connection.cursor() as cursor:
                cursor.execute(sql, [*chunk, QUEUES_PER_PATH])
                found.update(row[0] for row in cursor.fetchall())
        return found

    def lock_or_create(self, table: str, key: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        quote = self.connection.ops.quote_name
        columns = list(rows[0])
        values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
        # An upsert that changes nothing still locks the row it meets.
        sql = (
            f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES {values} {self.on_conflict_lock(key)}"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [row[column] for row in rows for column in columns])

    def on_conflict_lock(self, key: str) -> str:
        quote = self.connection.ops.quote_name
        return f"ON CONFLICT ({quote(key)}) DO UPDATE SET {quote(key)} = excluded.{quote(key)}"

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
        freeing: Sequence[str] = (),
    ) -> tuple[str, list]:
        """SQL (starting with AND) and params restricting the claim to some queues (and to
        the runs of some ``TASKS`` aliases: two aliases may share a database and its table)."""
        # Paused queues are skipped, and full ones (a queue limit with no slot free,
        # taskmill.limits): a tiny table, read by the claim itself, so a pause holds from
        # the moment it commits. A full queue in which the claim's own transaction frees a
        # slot (``freeing``: the outcomes it writes) is not: the gate, later in that
        # transaction, lets the claim take the slot at once, without a wake-up's round trip.
        full = "at_limit = TRUE"
        params: list = []
        if freeing:
            full = f"(at_limit = TRUE AND name NOT IN ({', '.join(['%s'] * len(freeing))}))"
            params.extend(freeing)
        sql = (
            f" AND queue_name NOT IN (SELECT name FROM {QUEUE_TABLE} WHERE paused = TRUE OR {full})"
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
            concurrency_key,
            rate_key,
            fair_key,
            snoozes,
            metadata,
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
            concurrency_key,
            rate_key,
            fair_key,
            snoozes,
            load_json(metadata),
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
    row.status = RunStatus.READY
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


# Upsert statements, by engine class and table: built on first use.
_UPSERTS: dict[tuple[type, str], str] = {}
