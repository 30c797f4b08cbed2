"""MySQL 8 / MariaDB 10.6+: SELECT ... FOR UPDATE SKIP LOCKED picks a batch, an UPDATE
marks it ours, in one short transaction. Neither has UPDATE ... RETURNING, so the
claimed rows' new values are computed here from what the SELECT read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from django.db import transaction

from .base import CLAIMED_COLUMNS, RUN_TABLE, ClaimedRun, Engine

SELECT_SQL = f"""
SELECT {", ".join(CLAIMED_COLUMNS)} FROM {RUN_TABLE}
WHERE status = 'READY' AND available_at <= %s{{queue_filter}}
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
    lease_expires_at = %s
WHERE id IN ({{ids}})
"""


class MySQLEngine(Engine):
    vendor = "mysql"

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
        now_value = self.adapt_datetime(now)
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute(
                SELECT_SQL.format(queue_filter=queue_sql), [now_value, *queue_params, limit]
            )
            picked = [self.claimed_from_row(row) for row in cursor.fetchall()]
            if not picked:
                return []
            ids = [run.id for run in picked]
            cursor.execute(
                MARK_SQL.format(ids=", ".join(["%s"] * len(ids))),
                [
                    worker_id,
                    worker_id,
                    now_value,
                    now_value,
                    self.adapt_datetime(lease_until),
                    *ids,
                ],
            )
        claimed = [
            replace(
                run,
                attempt=run.attempt + 1,
                worker_ids=[*run.worker_ids, worker_id],
                started_at=run.started_at or now,
                last_attempted_at=now,
            )
            for run in picked
        ]
        claimed.sort(key=ClaimedRun.sort_key)
        return claimed
