"""SQLite: the claim is one UPDATE ... RETURNING statement, which SQLite runs as a
single-writer transaction, so two workers can never take the same run."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from django.core import checks
from django.db import DatabaseError
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from ..status import RunStatus
from .base import CLAIMED_COLUMNS, RUN_TABLE, BaseEngine, ClaimedRun, ClaimRequest, Landed, Outcome
from .finish_sql import fenced, finish_assignments

CLAIM_SQL = f"""
UPDATE {RUN_TABLE}
SET status = '{RunStatus.RUNNING}',
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

# SQLite checks a CHECK constraint when its column is written, and the finish writes the
# metadata (finish_sql: COALESCE(done.metadata, run.metadata)): a row whose metadata was
# forged invalid (its JSON_VALID check switched off) would fail the finish of its whole
# batch, again and again. So a claimed row found corrupt gets NULL there first; it is
# refused all the same (ClaimedRun.problem), its error naming what the column held.
REPAIR_METADATA_SQL = f"""
UPDATE {RUN_TABLE} SET metadata = NULL
WHERE id IN ({{ids}}) AND metadata IS NOT NULL AND NOT json_valid(metadata)
"""


class SQLiteEngine(BaseEngine):
    vendor = "sqlite"
    skips_locked_rows = False  # a write transaction holds the whole database
    for_update = ""  # a write transaction holds the whole database
    skip_locked = ""

    def json_array_holds(self, field: str, values: Sequence[Any]) -> Q:
        # No JSON containment here: look at the array's elements one by one. A text '5' and
        # an integer 5 are different values to SQLite, hence one parameter each.
        quote = self.connection.ops.quote_name
        column = f"{quote(RUN_TABLE)}.{quote(field)}"
        marks = ", ".join(["%s"] * len(values))
        held = RawSQL(
            f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value IN ({marks}))",
            list(values),
            output_field=BooleanField(),
        )
        return Q(held)

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
            claimed = [self.claimed_from_row(row, r.now) for row in cursor.fetchall()]
            corrupt = [run.id for run in claimed if run.problem is not None]
            if corrupt:  # rare: a row taskmill never wrote
                marks = ", ".join(["%s"] * len(corrupt))
                cursor.execute(REPAIR_METADATA_SQL.format(ids=marks), corrupt)
            return claimed

    def check_database(self, where: str) -> list[checks.CheckMessage]:
        if sqlite3.sqlite_version_info < (3, 35):
            return [
                checks.Error(
                    f"{where}: taskmill needs SQLite 3.35+ (UPDATE ... RETURNING); this "
                    f"Python has {sqlite3.sqlite_version}.",
                    id="taskmill.E006",
                )
            ]
        return []

    @classmethod
    def answer_start_up_probes(cls, connection: Any) -> None:
        """Settle Django's "does this SQLite have JSON?" question without the write lock.

        Django asks it with ``SELECT JSON(...)`` inside ``transaction.atomic``; with
        ``transaction_mode: IMMEDIATE`` (what taskmill's docs recommend) that BEGIN waits for
        the write lock, and a database busy past its timeout then reads as "SQLite does not
        support JSONFields" (fields.E180): a system-check error that stops the worker, and a
        misleading one. Asked outside a transaction, the question takes no write lock. A
        database error (locked even for reading) propagates: the caller retries.
        """
        if "supports_json_field" in connection.features.__dict__:
            return
        with connection.cursor() as cursor:
            try:
                cursor.execute("""SELECT JSON('{"a": "b"}')""")
            except DatabaseError as exc:
                if "no such function" in str(exc):
                    return  # no JSON1 indeed: Django's own check says so, rightly
                raise
        # A cached_property: setting it on the instance answers the question for good.
        connection.features.supports_json_field = True

    def finish(
        self, outcomes: Sequence[Outcome], *, worker_id: str | None = None
    ) -> dict[int, Landed]:
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
                    outcome.snoozes,
                    None if outcome.metadata is None else json.dumps(outcome.metadata),
                ]
                for outcome in outcomes
            ]
        )
        # One statement is its own transaction, or part of the caller's.
        with self.connection.cursor() as cursor:
            cursor.execute(FINISH_SQL, [document, worker_id])
            return {
                row[0]: Landed(row[0], row[1], row[2], bool(row[3]), row[4])
                for row in cursor.fetchall()
            }


# One statement finishes a whole batch (UPDATE ... FROM, SQLite 3.33+; RETURNING, 3.35+): the
# outcomes travel as one JSON document, and the join on (id, attempt, RUNNING) is the fencing
# check. JSON columns travel as their JSON text (json_extract would unquote a JSON string).
FINISH_SQL = f"""
UPDATE {RUN_TABLE}
SET {finish_assignments(RUN_TABLE)}
FROM (
    SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt,
           json_extract(value, '$[2]') AS status, json_extract(value, '$[3]') AS finished_at,
           json_extract(value, '$[4]') AS expires_at, json_extract(value, '$[5]') AS available_at,
           json_extract(value, '$[6]') AS due, json_extract(value, '$[7]') AS return_value,
           json_extract(value, '$[8]') AS errors, json_extract(value, '$[9]') AS started_at,
           json_extract(value, '$[10]') AS snoozes,
           json_extract(value, '$[11]') AS metadata
    FROM json_each(%s)
) AS done
WHERE {fenced(RUN_TABLE)}
RETURNING id, attempt, status, has_dependents, batch_id
"""
