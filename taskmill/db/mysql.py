"""MySQL 8 / MariaDB 10.6+: SELECT ... FOR UPDATE SKIP LOCKED picks a batch, an UPDATE
marks it ours, in one short transaction. Neither has UPDATE ... RETURNING, so the
claimed rows' new values are computed here from what the SELECT read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from django.core import checks
from django.db import transaction

from ..status import RunStatus
from .base import CLAIMED_COLUMNS, RUN_TABLE, BaseEngine, ClaimedRun, ClaimRequest, Landed, Outcome
from .finish_sql import finish_assignments
from .records import dump_json_or_null
from .stats import SUM_COLUMNS

# What an argument column that held invalid JSON holds after the repair (below).
INVALID_JSON = "taskmill: this column held invalid JSON"

SELECT_SQL = f"""
SELECT {", ".join(CLAIMED_COLUMNS)} FROM {RUN_TABLE}
WHERE {{due_condition}} AND available_at <= %s{{queue_filter}}
ORDER BY priority DESC, available_at, id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

MARK_SQL = f"""
UPDATE {RUN_TABLE}
SET status = '{RunStatus.RUNNING}',
    attempt = attempt + 1,
    worker_id = %s,
    worker_ids = JSON_ARRAY_APPEND(worker_ids, '$', %s),
    started_at = %s,
    last_attempted_at = %s,
    lease_expires_at = %s,
    prefetched = FALSE
WHERE id IN ({{ids}})
"""

# JSON is text here, guarded by CHECK (JSON_VALID(...)) constraints, which MariaDB checks on
# every UPDATE of the row: one row whose JSON was forged invalid (the checks switched off)
# would make every claim (or rescue) that picks it fail, and stall the queue for good. So its
# invalid columns get valid values first: empty state, and for the arguments a JSON string,
# which the claim refuses as corrupt (ClaimedRun.problem) rather than run the task with no
# arguments.
REPAIR_SQL = f"""
UPDATE {RUN_TABLE}
SET args = IF(JSON_VALID(args), args, '"{INVALID_JSON}"'),
    kwargs = IF(JSON_VALID(kwargs), kwargs, '"{INVALID_JSON}"'),
    errors = IF(JSON_VALID(errors), errors, '[]'),
    worker_ids = IF(JSON_VALID(worker_ids), worker_ids, '[]'),
    options = IF(options IS NULL OR JSON_VALID(options), options, NULL),
    return_value = IF(return_value IS NULL OR JSON_VALID(return_value), return_value, NULL),
    metadata = IF(metadata IS NULL OR JSON_VALID(metadata), metadata, NULL)
WHERE id IN ({{ids}})
"""


# A batch's finish: lock its rows and read what the fencing check needs, then one UPDATE
# writes the outcomes that pass it (neither database has UPDATE ... RETURNING).
LOCK_FINISHING_SQL = f"""
SELECT id, attempt, status, stop_requested, has_dependents, worker_id, batch_id
FROM {RUN_TABLE}
WHERE id IN ({{ids}}) FOR UPDATE
"""
# The outcomes as a derived table of literal rows (MariaDB has no VALUES table constructor
# with column names, nor derived column lists). Values are final: the status, finish and
# expiry were decided from the locked rows, so no assignment reads a column assigned before.
FINISH_SQL = f"""
UPDATE {RUN_TABLE} AS run JOIN ({{rows}}) AS done ON run.id = done.id
SET {finish_assignments("run", status_decided=True)}
"""
FINISH_ROW = "SELECT %s AS id, %s AS status, %s AS finished_at, %s AS expires_at, " + (
    "%s AS available_at, %s AS due, %s AS return_value, %s AS errors, %s AS started_at, "
    "%s AS snoozes, %s AS metadata"
)
FINISH_MORE_ROWS = "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s"


class MySQLEngine(BaseEngine):
    vendor = "mysql"
    updates_returning = False

    def task_paths(self, after: str | None, limit: int) -> list[str]:
        # MySQL and MariaDB read a GROUP BY on an index's first column as a loose index scan
        # ("Using index for group-by"), one probe per value; their correlated MIN() in the
        # shared recursive query scans the whole index at each level instead.
        start = "" if after is None else "WHERE task_path > %s"
        sql = (
            f"SELECT task_path FROM {RUN_TABLE} {start} "
            "GROUP BY task_path ORDER BY task_path LIMIT %s"
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [*([] if after is None else [after]), int(limit)])
            return [row[0] for row in cursor.fetchall()]

    def queue_names(self, task_paths: Sequence[str]) -> set[str]:
        # A GROUP BY on the index's first two columns is a loose index scan here too, one
        # probe per (path, queue) pair.
        found: set[str] = set()
        for start in range(0, len(task_paths), 200):
            chunk = list(task_paths[start : start + 200])
            marks = ", ".join(["%s"] * len(chunk))
            sql = (
                f"SELECT task_path, queue_name FROM {RUN_TABLE} WHERE task_path IN ({marks}) "
                "GROUP BY task_path, queue_name"
            )
            with self.connection.cursor() as cursor:
                cursor.execute(sql, chunk)
                found.update(row[1] for row in cursor.fetchall())
        return found

    def claim_runs(self, request: ClaimRequest) -> list[ClaimedRun]:
        r = request
        now = self.adapt_datetime(r.now)
        # No savepoint inside a caller's transaction (a claim riding with the outcomes).
        with (
            transaction.atomic(using=self.alias, savepoint=False),
            self.connection.cursor() as cursor,
        ):
            select = SELECT_SQL.format(due_condition=self.due_condition, queue_filter=r.queue_sql)
            cursor.execute(select, [now, *r.queue_params, r.limit])
            picked = [self.claimed_from_row(row, r.now) for row in cursor.fetchall()]
            if not picked:
                return []
            self.repair_json([run.id for run in picked if run.problem is not None])
            ids = [run.id for run in picked]
            mark = MARK_SQL.format(ids=", ".join(["%s"] * len(ids)))
            lease_until = self.adapt_datetime(r.lease_until)
            cursor.execute(mark, [r.worker_id, r.worker_id, now, now, lease_until, *ids])
        # What the UPDATE did, applied to what the SELECT read.
        return [
            replace(
                run,
                attempt=run.attempt + 1,
                worker_ids=[*run.worker_ids, r.worker_id],
            )
            for run in picked
        ]

    def finish(
        self, outcomes: Sequence[Outcome], *, worker_id: str | None = None
    ) -> dict[int, Landed]:
        """Two statements for the whole batch instead of one per outcome: the rows are locked
        first, so what the fencing check read still holds when the UPDATE writes."""
        if not outcomes:
            return {}
        ids = sorted({outcome.run_id for outcome in outcomes})
        adapt = self.adapt_datetime
        landed: dict[int, Landed] = {}
        params: list[Any] = []
        with (
            transaction.atomic(using=self.alias, savepoint=False),
            self.connection.cursor() as cursor,
        ):
            cursor.execute(LOCK_FINISHING_SQL.format(ids=", ".join(["%s"] * len(ids))), ids)
            current = {row[0]: row for row in cursor.fetchall()}
            for outcome in outcomes:
                row = current.get(outcome.run_id)
                if row is None or row[2] != RunStatus.RUNNING or row[1] != outcome.attempt:
                    continue  # taken over: fenced out
                if worker_id is not None and row[5] != worker_id:
                    continue  # claimed again under the same attempt, by another worker
                stop_requested = bool(row[3])
                # A retry of a run whose stop was requested meanwhile is CANCELLED: final.
                if outcome.status != RunStatus.READY:
                    status = outcome.status
                else:
                    status = RunStatus.CANCELLED if stop_requested else RunStatus.READY
                final = status != RunStatus.READY
                params += [
                    outcome.run_id,
                    status,
                    adapt(outcome.finished_at) if final else None,
                    adapt(outcome.expires_at) if final else None,
                    adapt(outcome.available_at),
                    outcome.due,
                    dump_json_or_null(outcome.return_value),
                    json.dumps(outcome.errors),
                    adapt(outcome.started_at),
                    outcome.snoozes,
                    dump_json_or_null(outcome.metadata),
                ]
                landed[outcome.run_id] = Landed(
                    outcome.run_id, outcome.attempt, status, bool(row[4]), row[6]
                )
            if landed:
                rows = " UNION ALL ".join([FINISH_ROW] + [FINISH_MORE_ROWS] * (len(landed) - 1))
                cursor.execute(FINISH_SQL.format(rows=rows), params)
        return landed

    def upsert_adding_sql(self, table: str, keys: tuple[str, ...]) -> str:
        quote = self.connection.ops.quote_name
        updates = ", ".join(f"{quote(c)} = {quote(c)} + VALUES({quote(c)})" for c in SUM_COLUMNS)
        return f"{self.insert_rollup_sql(table, keys)} ON DUPLICATE KEY UPDATE {updates}"

    def on_conflict_lock(self, key: str) -> str:
        quote = self.connection.ops.quote_name
        return f"ON DUPLICATE KEY UPDATE {quote(key)} = {quote(key)}"

    def check_database(self, where: str) -> list[checks.CheckMessage]:
        messages: list[checks.CheckMessage] = []
        connection = self.connection
        connection.ensure_connection()
        if connection.mysql_is_mariadb:
            too_old = connection.mysql_version < (10, 6)
        else:
            too_old = connection.mysql_version < (8, 0, 1)
        if too_old:
            messages.append(
                checks.Error(
                    f"{where}: taskmill needs SKIP LOCKED (MySQL 8.0.1+, MariaDB 10.6+).",
                    id="taskmill.E005",
                )
            )
        isolation = connection.settings_dict["OPTIONS"].get("isolation_level")
        if isolation != "read committed":
            messages.append(
                checks.Warning(
                    f"{where}: MySQL/MariaDB runs should use the 'read committed' isolation "
                    "level; REPEATABLE READ takes gap locks that make workers wait on "
                    "each other.",
                    hint="Set DATABASES[...]['OPTIONS']['isolation_level'] = 'read committed'.",
                    id="taskmill.W002",
                )
            )
        return messages

    def expired_runs(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        rows = super().expired_runs(now, limit)
        # Rare (a worker died): checking every rescued row's JSON costs little here.
        self.repair_json([row["id"] for row in rows])
        return rows

    def repair_json(self, ids: list[int]) -> None:
        """Give the rows' invalid JSON columns valid values (REPAIR_SQL), in the caller's
        transaction, on rows it has locked."""
        if ids:
            with self.connection.cursor() as cursor:
                cursor.execute(REPAIR_SQL.format(ids=", ".join(["%s"] * len(ids))), ids)
