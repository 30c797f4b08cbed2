"""Attempts the database ended, through no fault of their task: counted as lost by the one
lost-attempt policy (lost.py), as a lost worker's are, and the run goes again.

Such an end is a transient database error raised by the task's body: the connection lost,
the server shutting down or read-only during a failover, a deadlock, a serialization
failure, a lock wait that timed out, SQLite's "database is locked" past its timeout
(``taskmill.db.errors.is_transient``). The statement that failed committed nothing, the
outage was the database's, and the same body on a new connection may well pass. So the run
goes back READY after a short backoff, like a lost worker's run: its error entry keeps the
task's real exception class and traceback and says ``"counted_as": "lost"``, so that it uses
no attempt of ``max_attempts`` (``taskmill.exceptions.task_failures``) and counts towards
TASKMILL_MAX_LOST_ATTEMPTS, after which the run fails: a task that breaks its own connection
every time cannot loop forever.

What the body did before the error may have committed: like a lost worker's, such a run is
at-least-once. A task that must not run again opts out with
``retry_on_database_errors=False``; its database errors are then failures like any other.

An ``atomic=True`` attempt first tries its transaction again in place (its rollback undid
the body: ``runners.atomic.call_atomic_retrying``); when the database keeps failing it, the
attempt ends here by the same rule.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

from ..compat import BaseTask
from ..db import ClaimedRun, Outcome
from ..db.errors import is_transient
from ..exceptions import COUNTED_AS, LOST, RunCancelled, TaskTimeout
from ..tasks import effective_option
from .lost import lost_outcome

# PEP 249's two branches under Error: every driver's exceptions (psycopg, mysqlclient,
# sqlite3) and Django's wrappers of them have one of these classes in their MRO.
_DB_API_ERRORS = frozenset({"DatabaseError", "InterfaceError"})
# How far down a chain of wrapped exceptions the database error is looked for.
_CHAIN_DEPTH = 16


def database_trouble(exc: BaseException) -> BaseException | None:
    """The transient database error ``exc`` is, or wraps, or None.

    A task may wrap the database's error in its own (``raise SyncFailed(...) from exc``, or
    raised while handling it), so the chain is followed, as Python prints it; an exception
    group counts when each of its members does. The worker's own verdicts (a cancellation,
    a timeout) are never the database's, whatever they were raised over.
    """
    if isinstance(exc, RunCancelled | TaskTimeout) or not isinstance(exc, Exception):
        return None
    return _trouble_in(exc, set())


def _trouble_in(exc: BaseException | None, seen: set[int]) -> BaseException | None:
    while exc is not None and id(exc) not in seen and len(seen) < _CHAIN_DEPTH:
        seen.add(id(exc))
        if isinstance(exc, BaseExceptionGroup):
            members = [_trouble_in(member, set(seen)) for member in exc.exceptions]
            if members and all(members):
                return members[0]
        elif _is_database_error(exc) and is_transient(exc):
            return exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def _is_database_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _DB_API_ERRORS for cls in type(exc).__mro__)


def retries_on_database_errors(task: BaseTask | None, stored_options: Any) -> bool:
    return effective_option(task, stored_options, "retry_on_database_errors") is not False


def database_interruption(
    run: ClaimedRun,
    task: BaseTask | None,
    exc: BaseException,
    error: dict[str, str],
    *,
    now: datetime | None = None,
    started_at: datetime | None = None,
) -> Outcome | None:
    """The outcome of an attempt whose body raised ``exc`` (recorded as ``error``), when the
    database is to blame and the task did not opt out: the run goes again, the attempt
    counted as lost. None: ``exc`` is the task's own failure, for its retry settings.

    Called on the thread that ran the body (a task thread, a child process): the database
    being in trouble, that thread's connections are closed, so the next attempt starts on
    fresh ones (after a failover a connection may still work, to a server now read-only).
    """
    if database_trouble(exc) is None:
        return None
    close_connections()
    if task is None or not retries_on_database_errors(task, run.options):
        return None
    return lost_outcome(run, task, {**error, COUNTED_AS: LOST}, now=now, started_at=started_at)


def close_connections() -> None:
    """Close this thread's database connections (Django's belong to a thread)."""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:  # someone else's transaction: not ours to end
            continue
        with contextlib.suppress(DatabaseError):
            connection.close()


async def close_async_connections(exc: BaseException) -> None:
    """For an async attempt that met database trouble: its ORM calls ran on asgiref's thread
    for sync code, which holds the connections to close, not the event loop's."""
    if database_trouble(exc) is not None:
        await sync_to_async(close_connections)()


__all__ = [
    "close_async_connections",
    "database_interruption",
    "database_trouble",
    "retries_on_database_errors",
]
