"""Database engines: the one place per vendor where taskmill's SQL lives."""

from __future__ import annotations

from functools import cache

from django.db import connections

from .base import ClaimedRun, Engine, Listener, NewRun, Outcome

__all__ = [
    "ClaimedRun",
    "Engine",
    "Listener",
    "NewRun",
    "Outcome",
    "get_engine",
    "reset_connection",
]


@cache
def _engine_class(vendor: str) -> type[Engine]:
    if vendor == "postgresql":
        from .postgresql import PostgreSQLEngine

        return PostgreSQLEngine
    if vendor == "mysql":
        from .mysql import MySQLEngine

        return MySQLEngine
    if vendor == "sqlite":
        from .sqlite import SQLiteEngine

        return SQLiteEngine
    raise NotImplementedError(
        f"taskmill supports PostgreSQL, MySQL/MariaDB and SQLite, not {vendor!r}."
    )


def reset_connection(alias: str) -> None:
    """Drop a connection after a database error so that the next query reconnects."""
    connection = connections[alias]
    try:
        connection.close()
    except Exception:
        # A dead connection can fail to close; forget it all the same.
        connection.connection = None


def get_engine(alias: str) -> Engine:
    """The engine for the database behind connection ``alias``."""
    return _engine_class(connections[alias].vendor)(alias)
