"""System checks on the SQLite databases taskmill's backends store runs in.

The backend's own checks (``taskmill.E001``-``E006``, ``W001``-``W002``) are in
``backend.py``, one set per ``TASKS`` alias. These are per database, so two aliases on one
file warn once. With Django's default SQLite settings, a worker, its scheduler thread and
the web process writing at once fail with "database is locked":

* ``taskmill.W003``: no WAL journal. In the default rollback journal a writer blocks every
  reader, and readers block the writer's commit.
* ``taskmill.W004``: no ``IMMEDIATE`` transactions, or no busy ``timeout``. A deferred
  transaction that reads, then writes, must upgrade its lock mid-way; if another process
  wrote meanwhile, SQLite fails it at once, whatever the timeout. The timeout is how long
  a connection queues for the write lock.
"""

from __future__ import annotations

import json
import re
from importlib import import_module
from typing import Any

from django.conf import settings
from django.core import checks

# What docs/configuration.md recommends, and the hints below spell out.
RECOMMENDED_INIT_COMMAND = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
RECOMMENDED_TIMEOUT = 20
LOCKING_SETTINGS = {"transaction_mode": "IMMEDIATE transactions", "timeout": "a busy timeout"}
WAL_PRAGMA = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)


def taskmill_databases() -> list[str]:
    """The ``DATABASES`` aliases that taskmill backends store runs in, each once."""
    from .backend import DatabaseBackend
    from .compat import task_backends

    aliases: list[str] = []
    for name in task_backends.settings:
        try:
            backend = task_backends[name]
        except Exception:  # a backend that cannot load: Django's own tasks check says so
            continue
        if isinstance(backend, DatabaseBackend) and backend.database not in aliases:
            aliases.append(backend.database)
    return aliases


def _vendor(database: dict[str, Any]) -> str:
    try:
        return import_module(f"{database.get('ENGINE', '')}.base").DatabaseWrapper.vendor
    except Exception:  # no such engine: Django reports it
        return ""


def _in_memory(name: Any) -> bool:
    # One connection's private database: no other process shares it, nothing to lock.
    name = str(name or "")
    return name in ("", ":memory:") or "mode=memory" in name


def _file_is_wal(name: Any) -> bool:
    """Whether the database file is in WAL mode already: the mode persists in the file, so a
    project may have set it once rather than in ``init_command``. Read from the file's
    header (its write and read format versions are 2 in WAL mode), without connecting: a
    check must not create the file, nor wait on a lock."""
    try:
        with open(name, "rb") as file:
            header = file.read(20)
    except (OSError, TypeError, ValueError):
        return False
    return header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"


def _entries(values: dict[str, Any]) -> str:
    """``"key": value`` pairs, as they are written in the settings file."""
    return ", ".join(f"{json.dumps(key)}: {json.dumps(value)}" for key, value in values.items())


def check_sqlite_settings(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for alias in taskmill_databases():
        database = settings.DATABASES.get(alias)
        if database is None or _vendor(database) != "sqlite" or _in_memory(database.get("NAME")):
            continue
        options = database.get("OPTIONS") or {}
        where = f"DATABASES[{alias!r}]"
        init_command = str(options.get("init_command") or "")
        wal = WAL_PRAGMA.search(init_command) or _file_is_wal(database.get("NAME"))
        if not wal:
            wanted = (
                f"PRAGMA journal_mode=WAL; {init_command.strip()}"
                if init_command.strip()
                else RECOMMENDED_INIT_COMMAND
            )
            messages.append(
                checks.Warning(
                    f"{where} is SQLite without the WAL journal: readers and the writer block "
                    "each other (a worker's commits, web requests, the scheduler), and what "
                    "waits too long fails with 'database is locked'.",
                    hint=f"In {where}['OPTIONS'], set {_entries({'init_command': wanted})}.",
                    obj=alias,
                    id="taskmill.W003",
                )
            )
        missing: dict[str, Any] = {}
        if str(options.get("transaction_mode") or "").upper() != "IMMEDIATE":
            missing["transaction_mode"] = "IMMEDIATE"
        if options.get("timeout") is None:
            missing["timeout"] = RECOMMENDED_TIMEOUT
        if missing:
            what = " and ".join(LOCKING_SETTINGS[key] for key in missing)
            messages.append(
                checks.Warning(
                    f"{where} is SQLite without {what}: concurrent writers (workers, the "
                    "scheduler, enqueues) fail with 'database is locked' instead of waiting "
                    "their turn.",
                    hint=f"In {where}['OPTIONS'], set {_entries(missing)}.",
                    obj=alias,
                    id="taskmill.W004",
                )
            )
    return messages
