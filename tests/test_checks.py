"""The SQLite settings checks (taskmill.W003, W004), through Django's check framework."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from taskmill.checks import check_sqlite_settings

# The overrides add an SQLite alias for the check to read; no connection is ever made to it.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

SQLITE = "django.db.backends.sqlite3"
RECOMMENDED = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


def on_sqlite(options: dict | None = None, **tasks_options) -> override_settings:
    """Settings with a taskmill backend on an SQLite file whose OPTIONS are ``options``
    (Django's defaults when None), beside the test database, whatever its vendor."""
    database = {"ENGINE": SQLITE, "NAME": "/nonexistent/app.sqlite3"}
    if options is not None:
        database["OPTIONS"] = options
    from django.conf import settings

    return override_settings(
        DATABASES={**settings.DATABASES, "app": database},
        TASKS={
            "default": {
                "BACKEND": "taskmill.backend.DatabaseBackend",
                "OPTIONS": {"DATABASE": "app"},
            },
            **tasks_options,
        },
    )


def taskmill_warnings() -> list[checks.CheckMessage]:
    # Called directly: run_checks() would also run checks that connect to every database.
    return check_sqlite_settings()


def test_the_check_is_registered_with_djangos_check_framework():
    assert check_sqlite_settings in checks.registry.registry.get_checks()


def test_djangos_default_sqlite_settings_get_both_warnings_saying_what_to_set():
    with on_sqlite():
        warnings = taskmill_warnings()
    assert [m.id for m in warnings] == ["taskmill.W003", "taskmill.W004"]
    wal, locking = warnings
    assert "DATABASES['app'] is SQLite without the WAL journal" in wal.msg
    assert wal.hint == (
        "In DATABASES['app']['OPTIONS'], set "
        '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;".'
    )
    assert "without IMMEDIATE transactions and a busy timeout" in locking.msg
    assert locking.hint == (
        'In DATABASES[\'app\'][\'OPTIONS\'], set "transaction_mode": "IMMEDIATE", "timeout": 20.'
    )
    assert all(m.level == checks.WARNING for m in warnings)


def test_the_recommended_settings_pass():
    with on_sqlite(RECOMMENDED):
        assert taskmill_warnings() == []
    # The test settings themselves are the recommended ones on SQLite.
    assert check_sqlite_settings() == []


@pytest.mark.parametrize(
    ("options", "expected_hint"),
    [
        # An init_command of the project's own keeps its pragmas; WAL goes first.
        (
            {**RECOMMENDED, "init_command": "PRAGMA foreign_keys=ON;"},
            '"init_command": "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;"',
        ),
        ({**RECOMMENDED, "init_command": "PRAGMA journal_mode=DELETE;"}, "journal_mode=WAL"),
    ],
)
def test_an_init_command_without_wal_is_warned_about(options, expected_hint):
    with on_sqlite(options):
        warnings = taskmill_warnings()
    assert [m.id for m in warnings] == ["taskmill.W003"]
    assert expected_hint in warnings[0].hint


@pytest.mark.parametrize(
    ("missing", "what", "hint"),
    [
        ("timeout", "without a busy timeout", '"timeout": 20.'),
        ("transaction_mode", "without IMMEDIATE transactions", '"transaction_mode": "IMMEDIATE".'),
    ],
)
def test_each_locking_setting_is_asked_for_alone(missing, what, hint):
    options = {key: value for key, value in RECOMMENDED.items() if key != missing}
    with on_sqlite(options):
        warnings = taskmill_warnings()
    assert [m.id for m in warnings] == ["taskmill.W004"]
    assert what in warnings[0].msg and warnings[0].hint.endswith(f"set {hint}")


def test_deferred_transactions_are_not_enough():
    with on_sqlite({**RECOMMENDED, "transaction_mode": "DEFERRED"}):
        assert [m.id for m in taskmill_warnings()] == ["taskmill.W004"]


def test_one_database_is_checked_once_and_only_if_taskmill_uses_it():
    second = {"BACKEND": "taskmill.backend.DatabaseBackend", "OPTIONS": {"DATABASE": "app"}}
    with on_sqlite(mails=second):  # two aliases, one database
        assert [m.id for m in taskmill_warnings()] == ["taskmill.W003", "taskmill.W004"]
    from django.conf import settings

    # An SQLite database beside taskmill's, holding no runs: not taskmill's business.
    with override_settings(
        DATABASES={**settings.DATABASES, "other": {"ENGINE": SQLITE, "NAME": "/x.sqlite3"}}
    ):
        assert taskmill_warnings() == []


def test_in_memory_databases_are_not_warned_about():
    with on_sqlite(), override_settings():
        from django.conf import settings

        settings.DATABASES["app"]["NAME"] = ":memory:"
        assert taskmill_warnings() == []


def test_a_file_already_in_wal_mode_needs_no_init_command(tmp_path):
    import sqlite3

    path = tmp_path / "app.sqlite3"
    with on_sqlite({"transaction_mode": "IMMEDIATE", "timeout": 20}), override_settings():
        from django.conf import settings

        settings.DATABASES["app"]["NAME"] = str(path)
        assert [m.id for m in taskmill_warnings()] == ["taskmill.W003"]  # no file yet
        assert not path.exists()  # and the check did not create it
        # Set once, WAL stays in the file: its header says so, and the check reads it.
        database = sqlite3.connect(path)
        assert database.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        database.execute("CREATE TABLE t (x)")
        database.close()
        assert taskmill_warnings() == []
        # Back to the rollback journal: warned again.
        database = sqlite3.connect(path)
        assert database.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
        database.close()
        assert [m.id for m in taskmill_warnings()] == ["taskmill.W003"]
