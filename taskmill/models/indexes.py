"""The indexes the worker's hot path reads, shaped for each database.

PostgreSQL and SQLite get partial indexes, so rows outside them (finished runs, runs deferred
to later) never touch a claim. MySQL/MariaDB have no partial indexes: there the filtering
columns lead the key instead, and a query reads only its slice. Declaring them as ``Index``
objects on the model keeps them alive through Django's table rebuilds (SQLite remakes tables).

- ``ClaimIndex``: READY runs that are due, in the claim's order.
- ``RunningIndex``: RUNNING runs by worker, for the heartbeat and the rescue.
- ``WaitingIndex``: runs waiting for their dependencies, for the sweep that settles strays.
- ``StageIndex``: READY runs deferred to later, by the time they become due; the worker's
  staging step reads it to mark them due, so claims never scan deferred runs. Since
  migration 0011, ``StagingIndex`` leaves out runs held back by a limit, which wait for a
  slot rather than a time (``taskmill.limits``).
- ``HeldIndex``: runs held back by a limit, by key, in the order they will be let go.
- ``KeyedReadyIndex``: due runs that carry a limit's key, for the gate that holds a full
  key's whole backlog at once.
- ``EndedIndex``: runs that ended FAILED (or CANCELLED) by id, for the control room's runs
  list filtered to that status; PostgreSQL and SQLite only.
"""

from __future__ import annotations

from typing import Any

from django.db import models

# The claim's ORDER BY: priority first, then when the run became available, then enqueue order.
CLAIM_ORDER = ["-priority", "available_at", "id"]


class _ShapedIndex(models.Index):
    """An index whose DDL depends on whether the database has partial indexes."""

    ordering: list[str] = []
    # The engine attribute that spells the partial index's condition (taskmill.db): the
    # queries use the same text, which SQLite needs to match a partial index.
    condition_attribute = ""
    leading: list[str] = []  # the condition's columns, leading the key where not partial

    def __init__(self, *, name: str) -> None:
        super().__init__(fields=self.ordering, name=name)

    def deconstruct(self) -> tuple[str, tuple, dict[str, Any]]:
        return (f"taskmill.models.indexes.{type(self).__name__}", (), {"name": self.name})

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        from ..db import get_engine  # here: the engines import the models

        if schema_editor.connection.features.supports_partial_indexes:
            engine = get_engine(schema_editor.connection.alias)
            condition = getattr(engine, self.condition_attribute)
            shaped = _LiteralConditionIndex(fields=self.ordering, name=self.name)
            shaped.condition_sql = condition
        else:
            shaped = models.Index(fields=[*self.leading, *self.ordering], name=self.name)
        return shaped.create_sql(model, schema_editor, using=using, **kwargs)


class _LiteralConditionIndex(models.Index):
    """A partial index whose WHERE is given as SQL text rather than rendered from a Q.

    Django renders ``Q(due=True)`` as ``"due"`` in one version and ``"due" = 1`` in another;
    the claim must repeat the index's terms exactly, so the text comes from one place.
    """

    condition_sql = ""

    def _get_condition_sql(self, model: Any, schema_editor: Any) -> str:
        return self.condition_sql


class ReadyIndex(_ShapedIndex):
    """The first claim index (migration 0001), before deferred runs were staged; kept so
    that old migrations still build what they built."""

    ordering = CLAIM_ORDER
    condition_attribute = "ready_condition"
    leading = ["status"]


class ClaimIndex(_ShapedIndex):
    ordering = CLAIM_ORDER
    condition_attribute = "due_condition"
    leading = ["status", "due"]


class RunningIndex(_ShapedIndex):
    """RUNNING runs by worker: what the heartbeat renews and the rescue scans. Not the lease
    time: renewing a lease then changes no indexed column, a cheap update."""

    ordering = ["worker_id"]
    condition_attribute = "running_condition"
    leading = ["status"]


class WaitingIndex(_ShapedIndex):
    """Runs WAITING for their dependencies: what the lifeline's sweep reads."""

    ordering = ["id"]
    condition_attribute = "waiting_condition"
    leading = ["status"]


class StageIndex(_ShapedIndex):
    """The staging index of migrations 0003-0010; kept so that they still build it."""

    ordering = ["available_at"]
    condition_attribute = "deferred_condition"
    leading = ["status", "due"]


class StagingIndex(_ShapedIndex):
    """Deferred runs that wait for a time, not for a limit's slot (migration 0011)."""

    ordering = ["available_at"]
    condition_attribute = "staging_condition"
    leading = ["status", "due", "held_by"]


class HeldIndex(_ShapedIndex):
    """Runs held back by a limit: a freed slot lets go the best of its key first."""

    ordering = ["held_by", "-priority", "available_at", "id"]
    condition_attribute = "held_condition"
    leading = ["status"]


class KeyedReadyIndex(models.Index):
    """Due runs whose ``column`` (a limit's key) is set: partial where the database allows.

    Read when a key fills up, to hold back all its due runs in one statement, so that the
    claim never meets them again one batch at a time (head-of-line blocking). MySQL/MariaDB
    get a plain index on the key: NULL for the runs of tasks without limits.
    """

    def __init__(self, *, fields: list[str], name: str) -> None:
        super().__init__(fields=fields, name=name)

    def _get_condition_sql(self, model: Any, schema_editor: Any) -> str | None:
        from ..db import get_engine  # here: the engines import the models

        column = model._meta.get_field(self.fields[0]).column
        not_null = _not_null_condition([column], schema_editor)
        if not_null is None:
            return None
        return f"{get_engine(schema_editor.connection.alias).due_condition} AND {not_null}"


def _not_null_condition(columns: list[str], schema_editor: Any) -> str | None:
    """``col IS NOT NULL AND ...`` where the database has partial indexes, else None."""
    if not schema_editor.connection.features.supports_partial_indexes:
        return None
    quote = schema_editor.quote_name
    return " AND ".join(f"{quote(column)} IS NOT NULL" for column in columns)


class NotNullIndex(models.Index):
    """An index of the rows whose first column is set: partial where the database allows.

    For a column that stays NULL while a run is in flight (``expires_at``). A claim and a
    finish change ``status``, so PostgreSQL writes a new entry in every index of the row (a
    status change is never a HOT update); a partial index skips the rows outside it. Every
    query that reads it compares the column (``expires_at <= now``), which implies NOT NULL
    to PostgreSQL's and SQLite's planners. MySQL/MariaDB get a plain index.
    """

    def _get_condition_sql(self, model: Any, schema_editor: Any) -> str | None:
        column = model._meta.get_field(self.fields[0].lstrip("-")).column
        return _not_null_condition([column], schema_editor)


class EndedIndex(models.Index):
    """Runs that ended with ``status`` (FAILED or CANCELLED), by id: partial indexes only.

    The runs list filtered to failed runs reads the runs of that status by id, newest first;
    without it the primary key is walked from the newest id down, through a million newer
    READY runs in an outage, before a failed one turns up (issue 25). A run enters it only
    when it fails for good or is cancelled, never on enqueue, claim or success: the hot path
    writes nothing more. SQLite matches ``status = ?`` bound to the same literal.

    MySQL/MariaDB get nothing: without a partial index this would be an index every insert
    writes (``(id)``) or every status change (``(status, id)``), and there the waiting
    index, shaped ``(status, id)`` (WaitingIndex), already serves the filter.
    """

    def __init__(self, *, status: str, name: str) -> None:
        super().__init__(fields=["id"], name=name)
        self.status = str(status)  # a RunStatus member, written as its value

    def deconstruct(self) -> tuple[str, tuple, dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        kwargs.pop("fields", None)
        return (path, args, {**kwargs, "status": self.status})

    def _get_condition_sql(self, model: Any, schema_editor: Any) -> str:
        column = schema_editor.quote_name(model._meta.get_field("status").column)
        return f"{column} = {schema_editor.quote_value(self.status)}"

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if not schema_editor.connection.features.supports_partial_indexes:
            return _NOTHING
        return super().create_sql(model, schema_editor, using=using, **kwargs)

    def remove_sql(self, model: Any, schema_editor: Any, **kwargs: Any) -> Any:
        if not schema_editor.connection.features.supports_partial_indexes:
            return _NOTHING
        return super().remove_sql(model, schema_editor, **kwargs)


# What EndedIndex runs where it builds no index: the schema editor executes whatever
# create_sql returns, and MySQL/MariaDB reject an empty statement. DO evaluates 0, no more.
_NOTHING = "DO 0"


class NotNullUniqueConstraint(models.UniqueConstraint):
    """Unique together, enforced by an index of the rows where ``nullable`` is set.

    The same rule as a plain unique constraint (NULLs never collide), in a smaller index that
    runs in flight skip (see NotNullIndex): ``(schedule, scheduled_for)`` is NULL for runs
    no schedule made, ``active_unique_key`` for runs without a unique key and for every
    finished run. MySQL/MariaDB, which have no partial indexes, get the plain constraint
    (Django would otherwise drop a conditional one there, and the rule with it).
    """

    def __init__(self, *, fields: list[str], nullable: str, name: str) -> None:
        super().__init__(fields=fields, name=name)
        self.nullable = nullable

    def _get_condition_sql(self, model: Any, schema_editor: Any) -> str | None:
        column = model._meta.get_field(self.nullable).column
        return _not_null_condition([column], schema_editor)

    def deconstruct(self) -> tuple[str, tuple, dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        kwargs["nullable"] = self.nullable
        return (path, args, kwargs)

    def __eq__(self, other: object) -> bool:
        # Not equal to a plain UniqueConstraint of the same fields: the migration state must
        # see the change from one to the other.
        if not isinstance(other, NotNullUniqueConstraint):
            return False
        return super().__eq__(other) and self.nullable == other.nullable
