"""PostgreSQL: one-statement claims with SKIP LOCKED, one-statement batched finishes,
LISTEN/NOTIFY to wake idle workers at once."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.db import models

from ..status import RunStatus
from .base import (
    CLAIMED_COLUMNS,
    RUN_TABLE,
    BaseEngine,
    ClaimedRun,
    ClaimRequest,
    Landed,
    Listener,
    NewRun,
    Outcome,
)
from .finish_sql import fenced, finish_assignments
from .inserts import PER_RUN, insert_plan, json_text, json_texts
from .listen_target import ListenTarget
from .records import NEW_RUN_COLUMN_SET

logger = logging.getLogger("taskmill.db")

CHANNEL = "taskmill"

_RETURNING = ", ".join(f"run.{column}" for column in CLAIMED_COLUMNS)

# The CTE picks and locks the best ready runs, skipping rows another worker is locking;
# the UPDATE marks them ours. Both happen in one statement, so one round trip claims a batch.
CLAIM_SQL = f"""
WITH picked AS (
    SELECT id FROM {RUN_TABLE}
    WHERE {{due_condition}} AND available_at <= %s{{queue_filter}}
    ORDER BY priority DESC, available_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
UPDATE {RUN_TABLE} AS run
SET status = '{RunStatus.RUNNING}',
    attempt = run.attempt + 1,
    worker_id = %s,
    worker_ids = run.worker_ids || jsonb_build_array(%s::text),
    started_at = %s,
    last_attempted_at = %s,
    lease_expires_at = %s,
    prefetched = FALSE
FROM picked
WHERE run.id = picked.id
RETURNING {_RETURNING}
"""

# One statement finishes a whole batch: the outcomes travel as one JSON document, and the
# join on (id, attempt, RUNNING) is the fencing check.
FINISH_SQL = f"""
UPDATE {RUN_TABLE} AS run
SET {finish_assignments("run")}
FROM jsonb_to_recordset(%s::jsonb) AS done(
    id bigint, attempt integer, status text, finished_at timestamptz, expires_at timestamptz,
    available_at timestamptz, due boolean, return_value jsonb, errors jsonb,
    started_at timestamptz, snoozes integer, metadata jsonb
)
WHERE {fenced("run")}
RETURNING run.id, run.attempt, run.status, run.has_dependents, run.batch_id
"""


def _insert_sql(connection: Any, fields: list[models.Field], varying: tuple[bool, ...]) -> str:
    """One statement that inserts a batch of runs and sends NOTIFY, in one round trip.

    Built from the model's fields, so columns added by later migrations come along. A
    column whose value differs between the runs travels as one array (unnest), one that is
    the same for all (most of them: the backend, the status, the timestamps of one
    enqueue...) as a single value; a lone run is then a plain row of values, which the
    server plans in a fraction of what a JSON document's decoding costs.
    """
    quote = connection.ops.quote_name
    selected, arrays = [], []
    for field, varies in zip(fields, varying, strict=True):
        json_column = isinstance(field, models.JSONField)
        # JSON travels as its text, cast here (a None is SQL NULL, as the ORM stores it).
        cast = _cast(connection, field)
        if varies:
            name = f"c{len(arrays)}"
            arrays.append(f"%s::{'text' if json_column else cast}[]")
            selected.append(f"r.{name}::jsonb" if json_column else f"r.{name}")
        else:
            selected.append(f"%s::{cast}")
    if arrays:
        names = ", ".join(f"c{index}" for index in range(len(arrays)))
        source = f"unnest({', '.join(arrays)}) WITH ORDINALITY AS r({names}, _position)"
    else:
        source = "generate_series(1, %s) AS r(_position)"
    return f"""
WITH inserted AS (
    INSERT INTO {RUN_TABLE} ({", ".join(quote(f.column) for f in fields)})
    SELECT {", ".join(selected)}
    FROM {source}
    ORDER BY r._position
    RETURNING id
),
woken AS (SELECT pg_notify('{CHANNEL}', queue) FROM unnest(%s::text[]) AS queue)
SELECT id FROM inserted WHERE (SELECT count(*) FROM woken) >= 0
"""


def _insert_one_sql(connection: Any, fields: list[models.Field], wake: bool) -> str:
    """One run: a plain INSERT ... VALUES, NOTIFY beside it when it wakes a queue.

    The batch statement's CTEs, generate_series and ORDER BY cost the server about 120 µs
    more to parse and plan, a fifth of a one-by-one enqueue (bench, client-side binding).
    """
    quote = connection.ops.quote_name
    insert = (
        f"INSERT INTO {RUN_TABLE} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(f'%s::{_cast(connection, f)}' for f in fields)}) RETURNING id"
    )
    if not wake:
        return insert
    return f"WITH inserted AS ({insert}) SELECT id, pg_notify('{CHANNEL}', %s) FROM inserted"


def _cast(connection: Any, field: models.Field) -> str:
    return "jsonb" if isinstance(field, models.JSONField) else field.db_type(connection)


def _json_ready(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class PostgreSQLEngine(BaseEngine):
    vendor = "postgresql"
    pushes_wakeups = True
    searches_json_by_containment = True
    due_condition = f"status = '{RunStatus.READY}' AND due"
    deferred_condition = f"status = '{RunStatus.READY}' AND NOT due"
    staging_condition = f"status = '{RunStatus.READY}' AND NOT due AND held_by IS NULL"
    true_literal = "true"
    _insert_statements: dict[tuple[Any, ...], str] = {}

    def insert_runs(self, runs: Sequence[NewRun], wake_queues: set[str]) -> None:
        # One round trip whatever the batch size, NOTIFY included: an enqueue outside a
        # transaction is then a single commit.
        if len(runs) == 1 and len(wake_queues) <= 1:
            ids = self._insert_one(runs[0], wake_queues)
        else:
            ids = self._insert_batch(runs, wake_queues)
        # Ids follow the SELECT's order, which is the order of ``runs``.
        for run, run_id in zip(runs, ids, strict=True):
            run.pk = run_id

    def _insert_one(self, run: NewRun, wake_queues: set[str]) -> list[int]:
        values = run.column_values()
        sent, params = [], []
        for column in insert_plan():
            if column.attname in values:
                value = values[column.attname]
                if column.is_json:
                    value = json_text(column.field, value)
            elif column.default is PER_RUN:
                value = json_text(column.field, column.field.get_default())
            else:
                value = column.default
            if not column.is_left_out(value):
                sent.append(column)
                params.append(value)
        wake = bool(wake_queues)
        key = ("one", wake, *(column.attname for column in sent))
        statement = self._insert_statements.get(key)
        if statement is None:
            fields = [column.field for column in sent]
            statement = self._insert_statements[key] = _insert_one_sql(
                self.connection, fields, wake
            )
        return self._execute_insert(statement, params + list(wake_queues))

    def _insert_batch(self, runs: Sequence[NewRun], wake_queues: set[str]) -> list[int]:
        extra_names = set().union(*(run.extra.keys() for run in runs))
        fields, columns, varying = [], [], []  # per column sent: the values of every run
        for plan in insert_plan():
            field, attname, default = plan.field, plan.attname, plan.default
            if default is PER_RUN:
                default = json_text(field, field.get_default())
            if attname in NEW_RUN_COLUMN_SET:  # read in C, a column at a time
                column = list(map(attrgetter(attname), runs))
                if plan.is_json:
                    column = json_texts(field, column)
            elif attname in extra_names:  # the scheduler's columns
                column = [
                    (json_text(field, run.extra[attname]) if plan.is_json else run.extra[attname])
                    if attname in run.extra
                    else default
                    for run in runs
                ]
            else:  # the field's default for every run
                column = [default]
            varies = column.count(column[0]) != len(column)
            if not varies and plan.is_left_out(column[0]):
                continue  # the database writes it itself: a shorter statement
            fields.append(field)
            columns.append(column)
            varying.append(varies)
        key = ("batch", *zip((f.attname for f in fields), varying, strict=True))
        statement = self._insert_statements.get(key)
        if statement is None:
            statement = self._insert_statements[key] = _insert_sql(
                self.connection, fields, tuple(varying)
            )
        # In the statement's order: the single values (SELECT), then the arrays (FROM) or
        # the row count, then the queues to wake.
        params = [column[0] for column, v in zip(columns, varying, strict=True) if not v]
        arrays = [column for column, v in zip(columns, varying, strict=True) if v]
        params += arrays if arrays else [len(runs)]
        params.append(sorted(wake_queues))
        return self._execute_insert(statement, params)

    def _execute_insert(self, statement: str, params: list[Any]) -> list[int]:
        with self.connection.cursor() as cursor:
            cursor.execute(statement, params)
            return sorted(row[0] for row in cursor.fetchall())

    def claim_runs(self, request: ClaimRequest) -> list[ClaimedRun]:
        r = request
        sql = CLAIM_SQL.format(due_condition=self.due_condition, queue_filter=r.queue_sql)
        params = [r.now, *r.queue_params, r.limit, r.worker_id, r.worker_id, r.now, r.now]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [*params, r.lease_until])
            return [self.claimed_from_row(row, r.now) for row in cursor.fetchall()]

    def finish(
        self, outcomes: Sequence[Outcome], *, worker_id: str | None = None
    ) -> dict[int, Landed]:
        if not outcomes:
            return {}
        document = json.dumps(
            [
                {
                    "id": outcome.run_id,
                    "attempt": outcome.attempt,
                    "status": outcome.status,
                    "finished_at": outcome.finished_at.isoformat(),
                    "expires_at": _json_ready(outcome.expires_at),
                    "available_at": _json_ready(outcome.available_at),
                    "due": outcome.due,
                    "return_value": outcome.return_value,
                    "errors": outcome.errors,
                    "started_at": _json_ready(outcome.started_at),
                    "snoozes": outcome.snoozes,
                    # null (or absent): the row keeps its metadata.
                    "metadata": outcome.metadata,
                }
                for outcome in outcomes
            ]
        )
        with self.connection.cursor() as cursor:
            cursor.execute(FINISH_SQL, [document, worker_id])
            return {row[0]: Landed(*row) for row in cursor.fetchall()}

    def notify(self, queue_name: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue_name])

    def start_listener(
        self, on_wakeup: Callable[[str], None], *, listen_database: str | None = None
    ) -> Listener:
        listener = PostgreSQLListener(ListenTarget(self.alias, listen_database), on_wakeup)
        listener.start()
        return listener

    def cancel_query(self, connection: Any) -> None:
        if connection.connection is None:
            return
        try:
            connection.connection.cancel_safe(timeout=2)
        except Exception as exc:  # the connection may be closing; the stop flag still stands
            logger.debug("Could not cancel the running query: %s", exc)


class PostgreSQLListener(Listener):
    """LISTENs on its own connection in a daemon thread, reconnecting when it drops."""

    def __init__(self, target: ListenTarget, on_wakeup: Callable[[str], None]) -> None:
        # Decided in the listener's thread, at its first connection (db/listen_target.py):
        # a pooler in transaction mode would swallow the notifications.
        self._target = target
        self._on_wakeup = on_wakeup
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskmill-listener", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self._stopping.is_set():
            try:
                params = self._target.params()
                if params is None:
                    return  # nothing delivers: the worker polls (said once, by the target)
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    logger.debug("Listening for NOTIFY on channel %r", CHANNEL)
                    self.connected.set()
                    backoff = 0.1
                    # A notification sent while we were reconnecting is lost, so wake once.
                    self._on_wakeup("")
                    while not self._stopping.is_set():
                        for notification in conn.notifies(timeout=0.1):
                            logger.debug("NOTIFY received for queue %r", notification.payload)
                            self._on_wakeup(notification.payload)
            except Exception as exc:  # a dropped connection must not end the listener
                self.connected.clear()
                if self._stopping.is_set():
                    return
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
