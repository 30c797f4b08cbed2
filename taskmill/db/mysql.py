"""MySQL 8 / MariaDB 10.6+: SELECT ... FOR UPDATE SKIP LOCKED picks a batch, an UPDATE
marks it ours, in one short transaction. Neither has UPDATE ... RETURNING, so the
claimed rows' new values are computed here from what the SELECT read."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from django.db import transaction

from .base import CLAIMED_COLUMNS, RUN_TABLE, ClaimedRun, ClaimRequest, Engine

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
SET status = 'RUNNING',
    attempt = attempt + 1,
    worker_id = %s,
    worker_ids = JSON_ARRAY_APPEND(worker_ids, '$', %s),
    started_at = COALESCE(started_at, %s),
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
    return_value = IF(return_value IS NULL OR JSON_VALID(return_value), return_value, NULL)
WHERE id IN ({{ids}})
"""


class MySQLEngine(Engine):
    vendor = "mysql"

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
            picked = [self.claimed_from_row(row) for row in cursor.fetchall()]
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
                started_at=run.started_at or r.now,
                last_attempted_at=r.now,
            )
            for run in picked
        ]

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
