"""Which database errors are worth trying again.

A deadlock, a serialization failure, a lock wait that timed out, a connection that went
away or a server that is read-only for the moment (a primary demoted during a failover)
says nothing about the statement: the same work, done again in a new transaction (on a new
connection), can succeed. Anything else (a constraint, a syntax error, bad data) fails the
same way every time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from django.db import DatabaseError, InterfaceError, connections

# How often a short operation of a caller's (a control request, a batch's seal) is tried
# before its error is raised: a deadlock's other party is a worker's transaction of a few
# milliseconds.
TRIES = 3

# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, lock_not_available,
# admin_shutdown, crash_shutdown, cannot_connect_now, read_only_sql_transaction (a write on a
# server that became a standby: the failover's new primary is elsewhere), and class 08
# (connection exceptions).
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "25006"}
# MySQL/MariaDB error numbers: lock wait timeout, deadlock, server shutdown, server gone away,
# lost connection, can't connect, connection killed (MariaDB), disconnected for inactivity.
# 2055: lost connection, with the system error.
_MYSQL_TRANSIENT = {1205, 1213, 1053, 2006, 2013, 2002, 2003, 1927, 4031, 2055}
# "The MariaDB server is running with the --read-only option" (1290) and "Running in
# read-only mode" (1836). 1290 is any option that prevents a statement (--secure-file-priv
# too, which does not pass): only its read-only form counts.
_MYSQL_READ_ONLY = {1290, 1836}
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (a Django database error or its driver's) may pass if tried again."""
    if isinstance(exc, InterfaceError):  # the connection is already closed
        return True
    for error in (exc, exc.__cause__):
        if error is None:
            continue
        if hasattr(error, "sqlstate") and hasattr(error, "pgconn"):  # psycopg's
            sqlstate = error.sqlstate
            if sqlstate is None:  # no answer from a server: connecting failed, or the link
                return "OperationalError" in (type(exc).__name__, type(error).__name__)
            return sqlstate in _PG_TRANSIENT or sqlstate.startswith("08")
        code = error.args[0] if error.args else None
        message = str(error)
        if isinstance(code, int) and code in _MYSQL_TRANSIENT:
            return True
        if isinstance(code, int) and code in _MYSQL_READ_ONLY and "read-only" in message:
            return True
        if any(text in message for text in _SQLITE_TRANSIENT):
            return True
        if "server closed the connection" in message or "connection is closed" in message:
            return True
    return False


def retried[T](operation: Callable[[], T], database: str, *, tries: int = TRIES) -> T:
    """Run ``operation`` (one transaction of its own) again when the database fails it for a
    passing reason (a deadlock with a worker's write, say). Not when a caller's transaction
    encloses it: that transaction is broken, and only its owner can begin it again."""
    for attempt in range(1, tries + 1):
        try:
            return operation()
        except DatabaseError as exc:
            if attempt == tries or not is_transient(exc) or connections[database].in_atomic_block:
                raise
            # Let the other transaction finish; jittered, so that retries do not meet again.
            time.sleep(0.05 * attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
