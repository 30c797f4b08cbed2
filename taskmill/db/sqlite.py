"""SQLite: the claim is one UPDATE ... RETURNING statement, which SQLite runs as a
single-writer transaction, so two workers can never take the same run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .base import CLAIMED_COLUMNS, RUN_TABLE, ClaimedRun, Engine

CLAIM_SQL = f"""
UPDATE {RUN_TABLE}
SET status = 'RUNNING',
    attempt = attempt + 1,
    worker_id = %s,
    worker_ids = json_insert(worker_ids, '$[#]', %s),
    started_at = COALESCE(started_at, %s),
    last_attempted_at = %s,
    lease_expires_at = %s
WHERE id IN (
    SELECT id FROM {RUN_TABLE}
    WHERE status = 'READY' AND available_at <= %s{{queue_filter}}
    ORDER BY priority DESC, available_at, id
    LIMIT %s
)
RETURNING {", ".join(CLAIMED_COLUMNS)}
"""


class SQLiteEngine(Engine):
    vendor = "sqlite"

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
        queue_sql, queue_params = self.queue_filter(queues, exclude_queues)
        sql = CLAIM_SQL.format(queue_filter=queue_sql)
        now_value = self.adapt_datetime(now)
        params = [
            worker_id,
            worker_id,
            now_value,
            now_value,
            self.adapt_datetime(lease_until),
            now_value,
            *queue_params,
            limit,
        ]
        # Outside any transaction: the statement is its own write transaction.
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        claimed = [self.claimed_from_row(row) for row in rows]
        claimed.sort(key=ClaimedRun.sort_key)
        return claimed
