"""SQLite: the claim is one UPDATE ... RETURNING statement, which SQLite runs as a
single-writer transaction, so two workers can never take the same run."""

from __future__ import annotations

from .base import CLAIMED_COLUMNS, RUN_TABLE, ClaimedRun, ClaimRequest, Engine

CLAIM_SQL = f"""
UPDATE {RUN_TABLE}
SET status = 'RUNNING',
    attempt = attempt + 1,
    worker_id = %s,
    worker_ids = json_insert(worker_ids, '$[#]', %s),
    started_at = COALESCE(started_at, %s),
    last_attempted_at = %s,
    lease_expires_at = %s,
    prefetched = FALSE
WHERE id IN (
    SELECT id FROM {RUN_TABLE}
    WHERE {{due_condition}} AND available_at <= %s{{queue_filter}}
    ORDER BY priority DESC, available_at, id
    LIMIT %s
)
RETURNING {", ".join(CLAIMED_COLUMNS)}
"""


class SQLiteEngine(Engine):
    vendor = "sqlite"
    for_update = ""  # a write transaction holds the whole database
    skip_locked = ""

    def claim_runs(self, request: ClaimRequest) -> list[ClaimedRun]:
        r = request
        now = self.adapt_datetime(r.now)
        lease_until = self.adapt_datetime(r.lease_until)
        params = [r.worker_id, r.worker_id, now, now, lease_until, now, *r.queue_params, r.limit]
        # Outside any transaction: the statement is its own write transaction.
        with self.connection.cursor() as cursor:
            cursor.execute(
                CLAIM_SQL.format(due_condition=self.due_condition, queue_filter=r.queue_sql), params
            )
            return [self.claimed_from_row(row) for row in cursor.fetchall()]
