"""What the subcommands share: logging set-up and finding taskmill's backend."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from ..backend import DatabaseBackend
from ..compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from ..db import answer_start_up_probes, reset_connection
from ..logs import LOG_FORMATS, JSONFormatter, log_format_setting

logger = logging.getLogger("taskmill")

# Marks the handler configure_logging installed, as against one of the project's.
TAKEN = "_taskmill_own_handler"

# Longest wait between two attempts to reach a database that is not there yet.
WAIT_BACKOFF_MAX = 5.0


def add_log_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text (the default) or json: one JSON object per line, for a log pipeline "
        "(default: the TASKMILL_LOG_FORMAT setting). Applies when your LOGGING does not "
        "handle taskmill's loggers.",
    )


def chosen_log_format(option: str | None) -> str:
    """The ``--log-format`` given, else ``TASKMILL_LOG_FORMAT``: the option wins."""
    if option is not None:
        return option
    try:
        return log_format_setting()
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


# Whether configure_logging said that the project's LOGGING overrides the format asked for:
# the commands call it twice (before the system checks, and in their handle), it says so once.
_said_overridden = False


def configure_logging(verbosity: int, log_format: str | None = None) -> bool:
    """Show taskmill's logs on stderr unless the project's LOGGING already handles them, as
    text or as JSON lines (``log_format``, else ``TASKMILL_LOG_FORMAT``). True when the lines
    taskmill writes itself are JSON."""
    global _said_overridden
    chosen = chosen_log_format(log_format)
    logger = logging.getLogger("taskmill")
    own = [handler for handler in logger.handlers if getattr(handler, TAKEN, False)]
    if own:  # installed by the first call
        return isinstance(own[0].formatter, JSONFormatter)
    if logger.handlers or logging.getLogger().handlers:
        if chosen == "json" and not _said_overridden:
            _said_overridden = True
            logger.warning(
                "Log format json not applied: your LOGGING handles taskmill's loggers, its "
                "formatters decide (taskmill.logs.JSONFormatter is one you can use there)"
            )
        return False
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, TAKEN, True)
    if chosen == "json":
        handler.setFormatter(JSONFormatter())
        # What no handler takes (a library's logger nobody configured: django_tasks' own on
        # Django 5.2, with a failed task's traceback) goes to Python's last resort, and
        # warnings.warn() to stderr, both as plain text: JSON lines among the others instead.
        last_resort = logging.StreamHandler(sys.stderr)
        last_resort.setLevel(logging.WARNING)
        last_resort.setFormatter(JSONFormatter())
        logging.lastResort = last_resort
        warnings_logger = logging.getLogger("py.warnings")
        if not warnings_logger.handlers:  # else captured warnings get a NullHandler
            warnings_logger.addHandler(last_resort)
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    return chosen == "json"


def describe_database(alias: str) -> str:
    """The alias, engine, name and address of a database, for an operator reading the log."""
    settings = connections[alias].settings_dict
    where = f" at {settings['HOST']}:{settings.get('PORT') or 'default port'}"
    return (
        f"{alias!r} ({connections[alias].vendor} {settings.get('NAME')}"
        f"{where if settings.get('HOST') else ''})"
    )


def wait_for_database(alias: str) -> None:
    """Return once the database answers; until then, say so and retry with a back-off.

    A worker or scheduler started before its database (a host reboot, containers started
    together) must wait for it, not crash: Django's own start-up (system checks that ask
    the server its version) and taskmill's first queries both need it.
    """
    failures = 0
    while True:
        try:
            connections[alias].ensure_connection()
            answer_start_up_probes(connections[alias])
        except DatabaseError as exc:
            failures += 1
            delay = min(0.1 * 2**failures, WAIT_BACKOFF_MAX)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logger.warning(
                "Database %s unreachable (%s); retrying in %.1fs",
                describe_database(alias),
                reason,
                delay,
            )
            reset_connection(alias)
            time.sleep(delay)
            continue
        if failures:
            logger.warning("Database %s reachable after %d attempt(s)", alias, failures + 1)
        return


def taskmill_backend(alias: str | None) -> DatabaseBackend:
    """The backend named ``alias``, or the default one, or the first taskmill backend."""
    if alias is None:
        aliases = list(task_backends.settings)
        if DEFAULT_TASK_BACKEND_ALIAS in aliases:
            aliases.remove(DEFAULT_TASK_BACKEND_ALIAS)
            aliases.insert(0, DEFAULT_TASK_BACKEND_ALIAS)
        for candidate in aliases:
            if isinstance(task_backends[candidate], DatabaseBackend):
                return task_backends[candidate]
        raise CommandError(
            "No TASKS backend uses taskmill.backend.DatabaseBackend; configure one in settings."
        )
    if alias not in task_backends.settings:
        raise CommandError(f"There is no TASKS backend named {alias!r}.")
    backend = task_backends[alias]
    if not isinstance(backend, DatabaseBackend):
        raise CommandError(
            f"TASKS backend {alias!r} is {type(backend).__qualname__}, not taskmill's "
            "DatabaseBackend."
        )
    return backend


# Argument types shared by the subcommands: a bad value is a usage error naming the rule.
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """``--database`` (a DATABASES alias) or ``--backend`` (a TASKS alias): where to read."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database",
        metavar="ALIAS",
        help="The DATABASES alias to read (default: the default taskmill backend's database).",
    )
    where.add_argument(
        "--backend", metavar="ALIAS", help="Read the database of this TASKS alias instead."
    )


def chosen_database(options: dict[str, Any]) -> str:
    alias = options.get("database")
    if alias is None:
        return taskmill_backend(options.get("backend")).database
    if alias not in connections.settings:
        raise CommandError(f"There is no database named {alias!r} in DATABASES.")
    return alias


# The exit status of a read-only command that could not read its database: distinct from 1
# (a problem found), so that a health check can tell "unhealthy" from "cannot tell".
UNREACHABLE = 2


def unreadable(alias: str, exc: DatabaseError) -> CommandError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CommandError(
        f"Cannot read the database {describe_database(alias)}: {reason}", returncode=UNREACHABLE
    )


def ensure_reachable(alias: str) -> None:
    """Connect now, or fail with one clear line and exit status 2."""
    try:
        connections[alias].ensure_connection()
    except DatabaseError as exc:
        raise unreadable(alias, exc) from exc


@contextlib.contextmanager
def reading_database(alias: str) -> Iterator[None]:
    """A database error while reading (the server gone meanwhile, tables not migrated) is
    one clear line and exit status 2, not a traceback."""
    ensure_reachable(alias)
    try:
        yield
    except DatabaseError as exc:
        raise unreadable(alias, exc) from exc
