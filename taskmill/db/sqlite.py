"""SQLite: the claim is one UPDATE ... RETURNING statement, which SQLite runs as a
single-writer transaction, so two workers can never take the same run."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .base import CLAIMED_COLUMNS, RUN_TABLE, ClaimedRun, ClaimRequest, Engine, Landed, Outcome

CLAIM_SQL = f"""
UPDATE {RUN_TABLE}
SET status = 'RUNNING',
    attempt = attempt + 1,
    worker_id = %s,
    worker_ids = json_insert(worker_ids, '$[#]', %s),
    started_at = %s,
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
            return [self.claimed_from_row(row, r.now) for row in cursor.fetchall()]

    def finish(self, outcomes: Sequence[Outcome]) -> dict[int, Landed]:
        if not outcomes:
            return {}
        adapt = self.adapt_datetime
        document = json.dumps(
            [
                [
                    outcome.run_id,
                    outcome.attempt,
                    outcome.status,
                    adapt(outcome.finished_at),
                    adapt(outcome.expires_at),
                    adapt(outcome.available_at),
                    outcome.due,
                    None if outcome.return_value is None else json.dumps(outcome.return_value),
                    json.dumps(outcome.errors),
                    adapt(outcome.started_at),
                ]
                for outcome in outcomes
            ]
        )
        # One statement is its own transaction, or part of the caller's.
        with self.connection.cursor() as cursor:
            cursor.execute(FINISH_SQL, [document])
            return {
                row[0]: Landed(row[0], row[1], row[2], bool(row[3])) for row in cursor.fetchall()
            }


# One statement finishes a whole batch (UPDATE ... FROM, SQLite 3.33+; RETURNING, 3.35+): the
# outcomes travel as one JSON document, and the join on (id, attempt, RUNNING) is the fencing
# check. JSON columns travel as their JSON text (json_extract would unquote a JSON string).
FINISH_SQL = f"""
UPDATE {RUN_TABLE}
SET status = CASE WHEN done.status <> 'READY' THEN done.status
                  WHEN {RUN_TABLE}.stop_requested THEN 'CANCELLED' ELSE 'READY' END,
    finished_at = CASE WHEN done.status <> 'READY' OR {RUN_TABLE}.stop_requested
                       THEN done.finished_at END,
    expires_at = CASE WHEN done.status <> 'READY' OR {RUN_TABLE}.stop_requested
                      THEN done.expires_at END,
    available_at = COALESCE(done.available_at, {RUN_TABLE}.available_at),
    due = COALESCE(done.due, {RUN_TABLE}.due),
    return_value = done.return_value,
    errors = done.errors,
    started_at = COALESCE(
        done.started_at, CASE WHEN {RUN_TABLE}.attempt > 1 THEN {RUN_TABLE}.started_at END
    ),
    last_attempted_at = COALESCE(
        done.started_at, CASE WHEN {RUN_TABLE}.attempt > 1 THEN {RUN_TABLE}.last_attempted_at END
    ),
    worker_id = '',
    lease_expires_at = NULL,
    prefetched = FALSE
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt,
           json_extract(value, '$[2]') AS status, json_extract(value, '$[3]') AS finished_at,
           json_extract(value, '$[4]') AS expires_at, json_extract(value, '$[5]') AS available_at,
           json_extract(value, '$[6]') AS due, json_extract(value, '$[7]') AS return_value,
           json_extract(value, '$[8]') AS errors, json_extract(value, '$[9]') AS started_at
    FROM json_each(%s)
) AS done
WHERE {RUN_TABLE}.id = done.id AND {RUN_TABLE}.attempt = done.attempt
  AND {RUN_TABLE}.status = 'RUNNING'
RETURNING id, attempt, status, has_dependents
"""
