"""Database engines: the one place per vendor where taskmill's SQL lives.

``contract.Engine`` says what every engine does; ``get_engine(alias)`` returns the one for a
connection's vendor.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from django.db import connections

from .contract import Engine, Listener
from .records import ClaimedRun, NewRun, Outcome

__all__ = [
    "ClaimedRun",
    "Engine",
    "Listener",
    "NewRun",
    "Outcome",
    "answer_start_up_probes",
    "get_engine",
    "reset_connection",
    "unsupported_vendor",
]

# Django's vendor name -> the engine's module and class.
ENGINES = {
    "postgresql": ("postgresql", "PostgreSQLEngine"),
    "mysql": ("mysql", "MySQLEngine"),
    "sqlite": ("sqlite", "SQLiteEngine"),
}


@cache
def _engine_class(vendor: str) -> type[Engine]:
    if vendor not in ENGINES:
        raise NotImplementedError(
            f"taskmill supports PostgreSQL, MySQL/MariaDB and SQLite, not {vendor!r}."
        )
    module, name = ENGINES[vendor]
    return getattr(import_module(f"{__name__}.{module}"), name)


def unsupported_vendor(alias: str) -> str | None:
    """The vendor of the database behind ``alias`` if taskmill has no engine for it."""
    vendor = connections[alias].vendor
    return None if vendor in ENGINES else vendor


def reset_connection(alias: str) -> None:
    """Drop a connection after a database error so that the next query reconnects."""
    connection = connections[alias]
    try:
        connection.close()
    except Exception:
        # A dead connection can fail to close; forget it all the same.
        connection.connection = None


def answer_start_up_probes(connection: Any) -> None:
    """Settle what Django would ask ``connection``'s database under a lock at start-up
    (``Engine.answer_start_up_probes``); nothing for a database taskmill does not support."""
    if connection.vendor in ENGINES:
        _engine_class(connection.vendor).answer_start_up_probes(connection)


def get_engine(alias: str) -> Engine:
    """The engine for the database behind connection ``alias``."""
    return _engine_class(connections[alias].vendor)(alias)
