"""Which database errors are worth trying again.

A deadlock, a serialization failure, a lock wait that timed out or a connection that went
away says nothing about the statement: the same work, done again in a new transaction (on a
new connection), can succeed. Anything else (a constraint, a syntax error, bad data) fails
the same way every time.
"""

from __future__ import annotations

from django.db import InterfaceError

# PostgreSQL SQLSTATEs: serialization_failure, deadlock_detected, lock_not_available,
# admin_shutdown, crash_shutdown, cannot_connect_now, and class 08 (connection exceptions).
_PG_TRANSIENT = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
# MySQL/MariaDB error numbers: lock wait timeout, deadlock, server shutdown, server gone away,
# lost connection, can't connect, connection killed (MariaDB), disconnected for inactivity.
_MYSQL_TRANSIENT = {1205, 1213, 1053, 2006, 2013, 2002, 2003, 1927, 4031}
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
        if isinstance(code, int) and code in _MYSQL_TRANSIENT:
            return True
        message = str(error)
        if any(text in message for text in _SQLITE_TRANSIENT):
            return True
        if "server closed the connection" in message or "connection is closed" in message:
            return True
    return False
