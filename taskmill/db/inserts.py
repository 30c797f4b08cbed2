"""What an enqueue writes: the run table's columns, their defaults, and their values as sent.

Every engine inserts ``NewRun`` records without building Django model instances (that, and
the ORM's per-object compilation, was most of a bulk enqueue's or a scheduler batch's time).
PostgreSQL sends them as arrays (taskmill.db.postgresql); SQLite and MariaDB, which return
the ids of a multi-row INSERT, as one ``INSERT ... VALUES (...), (...) RETURNING id``.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from django.db import models, transaction

from ..models import Run
from .records import RUN_TABLE, NewRun

# A default computed per run (a callable other than list or dict, say timezone.now).
PER_RUN = object()

# Rows per INSERT where the database sets no limit on parameters (MariaDB): keeps each
# statement well under max_allowed_packet.
ROWS_PER_STATEMENT = 1000


@functools.cache
def insert_columns() -> tuple[tuple[models.Field, Any], ...]:
    """The columns an enqueue writes, each with its default as sent (computed once: an
    enqueue is dozens of columns, and most take their default)."""
    columns = []
    for field in Run._meta.concrete_fields:
        if field.primary_key or getattr(field, "generated", False):
            continue
        fixed = not callable(field.default) or field.default in (list, dict)
        columns.append((field, json_text(field, field.get_default()) if fixed else PER_RUN))
    return tuple(columns)


# What a column holds when an INSERT leaves it out, for columns where that is known: NULL
# for a nullable column without a database default, the database default otherwise.
NOT_LEFT_OUT = object()


class InsertColumn(NamedTuple):
    """A column an enqueue writes, with what a statement needs to know of it, once."""

    field: models.Field
    attname: str
    default: Any  # as sent, or PER_RUN
    is_json: bool
    left_out: Any  # what the database writes when the column is left out, or NOT_LEFT_OUT

    def is_left_out(self, value: Any) -> bool:
        """Whether ``value`` (as sent) is what the database writes when this column is left
        out: the statement can then leave it out. Most of a new run's columns are NULL or
        false, so a one-run enqueue sends about half of them."""
        left_out = self.left_out
        if left_out is NOT_LEFT_OUT:
            return False
        if left_out is None or value is None:
            return left_out is value
        return type(value) is type(left_out) and value == left_out  # False, not 0


@functools.cache
def insert_plan() -> tuple[InsertColumn, ...]:
    return tuple(
        InsertColumn(
            field,
            field.attname,
            default,
            isinstance(field, models.JSONField),
            _value_if_left_out(field),
        )
        for field, default in insert_columns()
    )


def _value_if_left_out(field: models.Field) -> Any:
    if field.has_db_default():
        default = field.db_default
        if hasattr(default, "resolve_expression"):  # an expression: not a known value
            return NOT_LEFT_OUT
        return json_text(field, default)
    return None if field.null else NOT_LEFT_OUT


def json_text(field: models.Field, value: Any) -> Any:
    """A JSON column's value as the text the database stores; other values unchanged."""
    if not isinstance(field, models.JSONField):
        return value
    if value is None:
        return None if field.null else "null"
    # No arguments, no errors, no workers: most runs' JSON, written without the encoder.
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"
    return json.dumps(value)


def json_texts(field: models.Field, values: list[Any]) -> list[Any]:
    """``json_text`` of a column of values: the empty lists and dicts most runs hold (no
    arguments, no errors yet) without a call each."""
    return [
        ("[]" if value.__class__ is list else "{}")
        if not value and (value.__class__ is list or value.__class__ is dict)
        else json_text(field, value)
        for value in values
    ]


def insert_returning_ids(alias: str, runs: Sequence[NewRun]) -> None:
    """Insert ``runs`` with multi-row ``INSERT ... RETURNING id`` statements; set their pks.

    For databases whose multi-row INSERT returns ids (SQLite, MariaDB >= 10.5). Values are
    prepared as Django would save them (``get_db_prep_save``: datetimes as each database
    stores them), once per distinct object per column: the runs of one enqueue or one
    scheduler batch share most of theirs (the backend, the enqueue time...).
    """
    from django.db import connections

    connection = connections[alias]
    columns = insert_columns()
    names = ", ".join(connection.ops.quote_name(field.column) for field, _ in columns)
    # Values prepared so far, by column and object: the runs of one call share most of them.
    prepared: dict[tuple[str, int], Any] = {}
    rows = [_row_values(connection, columns, run.column_values(), prepared) for run in runs]
    max_params = connection.features.max_query_params
    per_statement = ROWS_PER_STATEMENT if max_params is None else max(1, max_params // len(columns))
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    ids: list[int] = []
    # One statement is atomic by itself (an enqueue outside a transaction: one commit).
    atomic = (
        transaction.atomic(using=alias, savepoint=False)
        if len(rows) > per_statement
        else contextlib.nullcontext()
    )
    with atomic, connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(
                f"INSERT INTO {RUN_TABLE} ({names}) VALUES "
                f"{', '.join([row_sql] * len(chunk))} RETURNING id",
                [value for row in chunk for value in row],
            )
            # Ids are handed out in the order of the VALUES; RETURNING's order is not
            # promised, hence the sort.
            ids.extend(sorted(row[0] for row in cursor.fetchall()))
    for run, run_id in zip(runs, ids, strict=True):
        run.pk = run_id


def _row_values(
    connection: Any,
    columns: tuple[tuple[models.Field, Any], ...],
    given: dict[str, Any],
    prepared: dict[tuple[str, int], Any],
) -> list[Any]:
    values = []
    for field, default in columns:
        if field.attname not in given:
            values.append(
                # A fresh object, freed after this row: its id must not enter the cache.
                _prepared(connection, field, field.get_default(), {})
                if default is PER_RUN
                else default
            )
        else:
            values.append(_prepared(connection, field, given[field.attname], prepared))
    return values


def _prepared(
    connection: Any, field: models.Field, value: Any, prepared: dict[tuple[str, int], Any]
) -> Any:
    if isinstance(field, models.JSONField):
        return json_text(field, value)
    if value is None or isinstance(value, str | int):  # bool is an int: sent as is
        return value
    # Datetimes mostly, prepared once per object (the runs hold them alive, so an id is not
    # reused during the call).
    key = (field.attname, id(value))
    if key not in prepared:
        prepared[key] = field.get_db_prep_save(value, connection)
    return prepared[key]
