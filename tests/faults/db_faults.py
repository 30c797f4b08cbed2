"""A test-only fault injector: a worker or scheduler process loses its database session at
one exact statement, for real.

``TASKMILL_TEST_FAULT="<spot>:<when>"`` in a process's environment (installed by
tests.testapp's AppConfig.ready, only when set) makes the first statement matching
``<spot>`` (``claim``, ``finish``, ``fire``, ``rescue`` or ``sync``: see SPOTS) kill its own
server session from a second connection (``pg_terminate_backend`` on PostgreSQL, ``KILL``
on MariaDB/MySQL):

- ``before``: the session dies before the statement is sent, so nothing it would have
  done happens and the statement fails with the driver's real error;
- ``after``: the statement runs and commits (in autocommit at once, in a transaction at its
  commit), then the session dies before the process hears back: the ambiguous case, where
  the work is done but the process sees an error.

- ``deadlock``: (a statement inside a transaction) the transaction deadlocks for real with
  another session just before the statement: it locks Effect row A, the other session
  holds row B and waits for A, then it asks for B. The other session is made the one the
  server spares (a longer deadlock_timeout on PostgreSQL, a heavier transaction on
  MariaDB), so the error lands in the process under test. TASKMILL_TEST_FAULT_ROWS="A,B".

When it fires, it writes ``fault.fired`` into TASKMILL_TEST_RECORD_DIR, so the test knows.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db.backends.signals import connection_created

# What each spot's statement looks like, whatever the engine (see taskmill/db/*.py).
SPOTS = {
    # PostgreSQL's one-statement claim; MySQL's UPDATE after its SELECT ... SKIP LOCKED.
    "claim": re.compile(r"SET status = 'RUNNING',\s+attempt = (run\.)?attempt \+ 1"),
    # The batched finish: PostgreSQL's and SQLite's one statement decide the status in SQL;
    # MySQL's UPDATE writes what was decided from the rows it locked first.
    "finish": re.compile(r"stop_requested THEN 'CANCELLED'|SET run\.status = done\.status"),
    # A fire's insert of its run, after the schedule's compare-and-set, in one transaction.
    "fire": re.compile(r"INSERT INTO [`\"]?taskmill_run[`\"]?\s"),
    # A rescue's fenced UPDATE of an expired run, in the lifeline's transaction.
    "rescue": re.compile(r"attempt = %s AND status = 'RUNNING' AND lease_expires_at < %s"),
    # The first statement on the schedules table: the code declarations' sync at start.
    "sync": re.compile(r"FROM [`\"]?taskmill_schedule[`\"]?"),
}

_lock = threading.Lock()
_state = {"armed": True}


def install() -> None:
    """Arm the fault named by TASKMILL_TEST_FAULT on every connection this process opens."""
    spot, when = os.environ["TASKMILL_TEST_FAULT"].split(":")
    if spot not in SPOTS or when not in ("before", "after", "deadlock"):
        raise ValueError(f"bad TASKMILL_TEST_FAULT {spot}:{when}")
    wrapper = _Wrapper(SPOTS[spot], when, f"{spot}:{when}")

    def arm(sender: Any, connection: Any, **kwargs: Any) -> None:
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    connection_created.connect(arm, weak=False)


def _take() -> bool:
    """The first matching statement of the whole process fires the fault, once."""
    with _lock:
        armed = _state["armed"]
        _state["armed"] = False
        return armed


class _Wrapper:
    def __init__(self, pattern: re.Pattern[str], when: str, name: str) -> None:
        self.pattern = pattern
        self.when = when
        self.name = name

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict
    ) -> Any:
        if not (_state["armed"] and self.pattern.search(sql) and _take()):
            return execute(sql, params, many, context)
        connection = context["connection"]
        if self.when == "deadlock":
            if not connection.in_atomic_block:
                raise AssertionError(f"{self.name}: the statement is not in a transaction")
            _fired(self.name)
            deadlock(connection)  # raises the server's deadlock error
            raise AssertionError("no deadlock")
        if self.when == "before":
            kill_session(connection)
            _fired(self.name)
            return execute(sql, params, many, context)  # fails: the session is gone
        result = execute(sql, params, many, context)
        if connection.in_atomic_block:
            _kill_after_commit(connection, self.name)
        else:  # autocommit: the statement has committed already
            kill_session(connection)
            _fired(self.name)
            _raise_lost_reply(connection)
        return result


def _kill_after_commit(connection: Any, name: str) -> None:
    """Commit for real, then lose the session before the caller hears the commit went in."""
    commit = connection._commit

    def commit_then_die() -> None:
        connection._commit = commit
        commit()
        kill_session(connection)
        _fired(name)
        _raise_lost_reply(connection)

    connection._commit = commit_then_die


def _raise_lost_reply(connection: Any) -> None:
    """The driver's real error for the dead session: what a lost reply looks like."""
    with connection.wrap_database_errors:
        raw = connection.connection.cursor()
        raw.execute("SELECT 1")
        raw.fetchall()
    raise AssertionError("the killed session still answered")


# The suite that runs through a PgBouncer in transaction mode (scripts/test): a client
# connection has no server session of its own outside a transaction.
POOLED = bool(os.environ.get("TASKMILL_TEST_PGBOUNCER"))


def session_id(connection: Any) -> int:
    raw = connection.connection
    if connection.vendor == "postgresql":
        if POOLED:  # psycopg knows the pooler's number; the server session lent, inside a
            # transaction (the callers' case), is the server's own
            with raw.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                return cursor.fetchone()[0]
        return raw.info.backend_pid
    return raw.thread_id()


def kill_session(connection: Any) -> None:
    """End ``connection``'s server session from another connection, and wait until it is."""
    from django.db import connections

    pooled = POOLED and connection.vendor == "postgresql"
    victim = session_id(connection)
    if pooled:
        _drop_the_line(connection)
    killer = connections.create_connection(connection.alias)
    try:
        with killer.cursor() as cursor:
            if pooled:
                _wait_rolled_back(cursor, victim)
                return
            if connection.vendor == "postgresql":
                # With a timeout, pg_terminate_backend waits until the session has ended.
                cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [victim])
                return
            cursor.execute(f"KILL {int(victim)}")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                cursor.execute(
                    "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s", [victim]
                )
                if not cursor.fetchone()[0]:
                    return
                time.sleep(0.01)
            raise AssertionError(f"session {victim} still there after KILL")
    finally:
        killer.close()


def _wait_rolled_back(cursor: Any, server_session: int) -> None:
    """Wait until the pooler has ended the transaction of the server session it lent to a
    client that went away: until then its row locks stand, and a locking read that skips
    locked rows (a rescue's) passes them over. CI's PgBouncer leg saw a rescue run too soon."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cursor.execute(
            # Not the session this statement was lent: the pooler lends only idle ones.
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s AND pid <> pg_backend_pid() "
            "AND xact_start IS NOT NULL",
            [server_session],
        )
        if not cursor.fetchone()[0]:
            return
        time.sleep(0.01)
    raise AssertionError(f"server session {server_session} still in its transaction")


def _drop_the_line(connection: Any) -> None:
    """Through a pooler, a session to kill exists only inside a transaction: cut the client's
    own connection instead, as a network would. Its next statement fails as with a killed
    session, and the pooler ends (rolls back) the server session a transaction held."""
    line = socket.socket(fileno=os.dup(connection.connection.fileno()))
    try:
        line.shutdown(socket.SHUT_RDWR)
    finally:
        line.close()


def _fired(name: str) -> None:
    directory = os.environ.get("TASKMILL_TEST_RECORD_DIR")
    if directory:
        (Path(directory) / "fault.fired").write_text(f"{name} {os.getpid()}\n")


def deadlock(connection: Any) -> None:
    """Deadlock ``connection``'s open transaction with another session, for real."""
    from django.db import connections

    first, second = (int(row) for row in os.environ["TASKMILL_TEST_FAULT_ROWS"].split(","))
    lock_sql = "SELECT id FROM testapp_effect WHERE id = %s FOR UPDATE"
    holding = threading.Event()
    other: dict[str, Any] = {}

    def other_session() -> None:
        session = connections.create_connection(connection.alias)
        try:
            session.set_autocommit(False)
            with session.cursor() as cursor:
                if session.vendor == "postgresql":
                    # The victim is the session whose deadlock check runs first: not this one.
                    cursor.execute("SET LOCAL deadlock_timeout = '30s'")
                else:
                    # InnoDB rolls back the lighter transaction: make this one heavier.
                    cursor.executemany(
                        "INSERT INTO testapp_effect (name) VALUES (%s)",
                        [(f"ballast-{i}",) for i in range(50)],
                    )
                cursor.execute(lock_sql, [second])
                other["id"] = session_id(session)
                holding.set()
                cursor.execute(lock_sql, [first])  # waits for the process under test
            session.rollback()
        except Exception as exc:  # reported through the test's assertions, not here
            other["error"] = exc
            holding.set()
        finally:
            session.close()

    with connection.wrap_database_errors:
        raw = connection.connection.cursor()
        raw.execute(lock_sql, [first])
    thread = threading.Thread(target=other_session, name="deadlock-peer", daemon=True)
    thread.start()
    if not holding.wait(10) or "error" in other:
        raise AssertionError(f"the other session could not take its lock: {other}")
    _wait_until_blocked(connection, other["id"])
    try:
        with connection.wrap_database_errors:
            raw.execute(lock_sql, [second])  # the crossing: one of the two must die
    finally:
        thread.join(30)


def _wait_until_blocked(connection: Any, session: int) -> None:
    """Until the other session waits on our lock (seen from a third connection: a
    transaction's own view of pg_stat_activity does not change while it lasts)."""
    from django.db import connections

    if connection.vendor == "postgresql":
        sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'"
        pause = 0.01
    else:
        sql = (
            "SELECT COUNT(*) FROM information_schema.innodb_trx "
            "WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'"
        )
        # InnoDB refills the cache behind innodb_trx only when nobody has read it for 0.1 s
        # (trx0i_s.cc, CACHE_MIN_IDLE_TIME_US): polled every 10 ms, a first read made before
        # the peer blocked kept the table stale for good, and CI saw "never waited".
        pause = 0.15
    observer = connections.create_connection(connection.alias)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with observer.cursor() as cursor:
                cursor.execute(sql, [session])
                if cursor.fetchone()[0]:
                    return
            time.sleep(pause)
        raise AssertionError(
            f"session {session} never waited for our lock; the server's transactions: "
            f"{_transactions(observer)}"
        )
    finally:
        observer.close()


def _transactions(observer: Any) -> list[tuple[Any, ...]]:
    """What each open transaction is doing, for a failure message."""
    if observer.vendor == "postgresql":
        sql = (
            "SELECT pid, state, wait_event_type, left(query, 120) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        )
    else:
        sql = (
            "SELECT trx_mysql_thread_id, trx_state, trx_rows_locked, trx_rows_modified, "
            "left(trx_query, 120) FROM information_schema.innodb_trx"
        )
        time.sleep(0.15)  # unread for 0.1 s, or InnoDB serves its stale cache
    with observer.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()
