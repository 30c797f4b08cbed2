"""The run table's indexes as migrated (0009): the indexes of what is set only are partial
where the database has partial indexes, and keep their unique rules on every database (the
rules themselves: tests/test_unique.py and tests/scheduler/test_firing.py)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db

NOT_NULL_INDEXES = {
    "taskmill_run_fire_once": "schedule_id",
    "taskmill_run_active_once": "active_unique_key",
    "taskmill_run_expires": "expires_at",
}


def index_definitions() -> dict[str, str]:
    """Index name -> its DDL, on the databases that keep it (not MySQL/MariaDB)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", ["taskmill_run"]
            )
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL",
                ["taskmill_run"],
            )
        else:
            return {}
        return dict(cursor.fetchall())


def test_the_indexes_of_what_is_set_only_are_partial_where_the_database_allows():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "taskmill_run")
    assert NOT_NULL_INDEXES.keys() <= constraints.keys()
    assert not {"taskmill_run_unique_fire", "taskmill_run_unique_active"} & constraints.keys()
    assert constraints["taskmill_run_fire_once"]["unique"]
    assert constraints["taskmill_run_active_once"]["unique"]
    # The old auto-named expires_at index is gone: claims and finishes no longer write it.
    on_expires = [
        name for name, c in constraints.items() if c["index"] and c["columns"] == ["expires_at"]
    ]
    assert on_expires == ["taskmill_run_expires"]
    definitions = index_definitions()
    if connection.features.supports_partial_indexes:
        for name, column in NOT_NULL_INDEXES.items():
            # PostgreSQL spells it WHERE (col IS NOT NULL), SQLite as written, quoted.
            ddl = definitions[name].replace('"', "").replace("(", "").replace(")", "")
            assert ddl.endswith(f"WHERE {column} IS NOT NULL"), definitions[name]
        # finished_at stays a full index: the control room sorts by it, unfinished runs too.
        (finished,) = [
            ddl for name, ddl in definitions.items() if name.startswith("taskmill_run_finished_at")
        ]
        assert "WHERE" not in finished


ENDED_INDEXES = {"taskmill_run_failed": "FAILED", "taskmill_run_cancelled": "CANCELLED"}


def test_runs_that_ended_failed_or_cancelled_are_indexed_by_id_where_partial_indexes_exist():
    """Migration 0015: the runs list filtered to a failed status reads only those runs."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "taskmill_run")
    if not connection.features.supports_partial_indexes:
        # MySQL/MariaDB: no index every insert or status change would write.
        assert not ENDED_INDEXES.keys() & constraints.keys()
        return
    definitions = index_definitions()
    for name, status in ENDED_INDEXES.items():
        assert constraints[name]["columns"] == ["id"]
        ddl = definitions[name].replace('"', "").replace("(", "").replace(")", "")
        # PostgreSQL adds a cast: WHERE status::text = 'FAILED'::text.
        assert ddl.replace("::text", "").endswith(f"WHERE status = '{status}'"), ddl


def test_the_failed_filter_reads_the_failed_index():
    """The runs list's own query, as the ORM writes it (a bound parameter on SQLite), is
    served by the partial index rather than a walk down the primary key."""
    if not connection.features.supports_partial_indexes:
        pytest.skip("no partial indexes: the (status, id) waiting index serves it")
    from taskmill.models import Run

    query = Run.objects.filter(status="FAILED").order_by("-id")[:100]
    plan = query.explain()
    assert "taskmill_run_failed" in plan, plan


@pytest.mark.django_db(transaction=True)  # migrate runs DDL: the table is flushed after
def test_migration_0015_applies_and_reverses():
    from django.core.management import call_command

    def ended() -> set[str]:
        with connection.cursor() as cursor:
            names = connection.introspection.get_constraints(cursor, "taskmill_run").keys()
        return ENDED_INDEXES.keys() & names

    migrated = ended()
    call_command("migrate", "taskmill", "0014", verbosity=0)
    try:
        assert ended() == set()
    finally:
        call_command("migrate", "taskmill", verbosity=0)
    assert ended() == migrated
    # Partial indexes only: MySQL/MariaDB ran "DO 0" both ways.
    assert bool(migrated) == connection.features.supports_partial_indexes
