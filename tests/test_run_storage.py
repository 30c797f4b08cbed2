"""Migration 0014: the runs table's storage parameters (autovacuum) are set on PostgreSQL, as
``reloptions`` in ``pg_class``, reset when it is unapplied, and nothing changes on SQLite and
MySQL/MariaDB, which have no such parameters (docs/performance.md, "Retention at volume")."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

# migrate runs DDL and records it: a test that commits (the table is flushed after).
pytestmark = pytest.mark.django_db(transaction=True)

MIGRATION = importlib.import_module("taskmill.migrations.0014_run_storage")


def runs_table() -> Any:
    """The runs table as the database describes it: its reloptions on PostgreSQL, its DDL
    elsewhere."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reloptions FROM pg_class WHERE oid = 'taskmill_run'::regclass")
            (options,) = cursor.fetchone()
            return dict(option.split("=", 1) for option in options or [])
        if connection.vendor == "mysql":
            cursor.execute("SHOW CREATE TABLE taskmill_run")
            return cursor.fetchone()[1]
        cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'taskmill_run'")
        return cursor.fetchone()[0]


def applied() -> bool:
    return (
        MigrationRecorder(connection)
        .migration_qs.filter(app="taskmill", name="0014_run_storage")
        .exists()
    )


def test_the_runs_table_storage_parameters_are_set_on_postgresql_only_and_reversibly():
    migrated = runs_table()
    assert applied()
    call_command("migrate", "taskmill", "0013", verbosity=0)
    try:
        assert not applied()
        unapplied = runs_table()
    finally:
        call_command("migrate", "taskmill", verbosity=0)
    assert applied()
    if connection.vendor == "postgresql":
        assert migrated == MIGRATION.PARAMETERS
        assert unapplied == {}  # PostgreSQL's defaults again
    else:
        assert unapplied == migrated
    assert runs_table() == migrated
