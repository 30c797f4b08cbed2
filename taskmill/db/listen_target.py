"""Where a PostgreSQL worker LISTENs for wake-ups, when a connection pooler is in the way.

Behind PgBouncer (or a managed pooler) in transaction mode, LISTEN runs on whichever server
connection the pooler lends for that one statement, which then goes back to the pool: the
notifications never reach the worker. So the listener first proves that its connection
delivers: it LISTENs on a channel of its own and NOTIFYs it from a second connection. If the
notification arrives, that is the target (PostgreSQL itself, or a pooler in session mode).
If not, it asks the server where it is (``inet_server_addr()``, ``inet_server_port()``: the
server's own address, not the pooler's) and proves a direct connection there the same way.
If that fails too, there is no listener: the worker polls, and says so once, naming
``LISTEN_DATABASE``.

``TASKS[alias]["OPTIONS"]["LISTEN_DATABASE"]``, a ``DATABASES`` alias that reaches
PostgreSQL directly, skips all this: its connection is the target.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

from django.db import connections

logger = logging.getLogger("taskmill.worker")

# How long a probe waits for its own notification: on a direct connection it arrives in a
# millisecond; a busy machine gets a generous margin.
PROBE_SECONDS = 3.0
CONNECT_TIMEOUT = 5


def psycopg_params(django_params: dict[str, Any]) -> dict[str, Any]:
    """A Django connection's parameters for a plain psycopg connection: its own adapters,
    cursor class and prepared statements are for Django's connections, not this one."""
    return {
        key: value
        for key, value in django_params.items()
        if key not in {"cursor_factory", "context", "prepare_threshold"}
    }


def _where(params: dict[str, Any]) -> str:
    return f"{params.get('host') or 'the local socket'}:{params.get('port') or 5432}"


class Unreachable(Exception):
    """The target could not be reached: decide again once it can."""


def delivers(params: dict[str, Any]) -> bool:
    """Whether a connection made with ``params`` receives a NOTIFY sent from another one.
    Raises ``Unreachable`` when it cannot connect at all."""
    import psycopg

    channel = f"taskmill_probe_{secrets.token_hex(6)}"
    try:
        listening = psycopg.connect(**params, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as exc:
        raise Unreachable(f"{_where(params)}: {exc}") from exc
    try:
        with listening:
            listening.execute(f"LISTEN {channel}")
            with psycopg.connect(
                **params, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            ) as sending:
                sending.execute("SELECT pg_notify(%s, 'probe')", [channel])
            return any(True for _ in listening.notifies(timeout=PROBE_SECONDS, stop_after=1))
    except psycopg.Error as exc:  # a pooler that rejects LISTEN, a dropped connection...
        logger.debug("LISTEN probe at %s failed: %s", _where(params), exc)
        return False


def server_address(params: dict[str, Any]) -> tuple[str | None, int | None]:
    """The server's own address and port, as it sees them (a pooler's are not)."""
    import psycopg

    with psycopg.connect(**params, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
        row = conn.execute("SELECT host(inet_server_addr()), inet_server_port()").fetchone()
    assert row is not None
    return row[0], row[1]


class ListenTarget:
    """Decides once, in the listener's thread, which parameters its connection uses."""

    def __init__(self, database: str, listen_database: str | None = None) -> None:
        self.database = database
        self.listen_database = listen_database
        self._lock = threading.Lock()
        self._decided = False
        self._params: dict[str, Any] | None = None

    def params(self) -> dict[str, Any] | None:
        """The LISTEN connection's parameters, or None: no target delivers, poll. Raises
        ``Unreachable`` while the database cannot be reached (the listener tries again)."""
        with self._lock:
            if not self._decided:
                self._params = self._decide()
                self._decided = True
            return self._params

    def _decide(self) -> dict[str, Any] | None:
        if self.listen_database:
            return psycopg_params(connections[self.listen_database].get_connection_params())
        configured = psycopg_params(connections[self.database].get_connection_params())
        if delivers(configured):
            return configured
        direct = self._direct(configured)
        if direct is not None and self._delivers_if_reachable(direct):
            logger.info(
                "Database %r at %s did not deliver NOTIFY (a pooler in transaction mode?): "
                "wake-ups come over a direct connection to the server at %s",
                self.database,
                _where(configured),
                _where(direct),
            )
            return direct
        logger.warning(
            "Database %r at %s does not deliver NOTIFY (a pooler in transaction mode?) and "
            "the server cannot be reached directly: this worker polls for new runs instead "
            "of being woken. Set TASKS[...]['OPTIONS']['LISTEN_DATABASE'] to a DATABASES "
            "alias that reaches PostgreSQL directly.",
            self.database,
            _where(configured),
        )
        return None

    @staticmethod
    def _delivers_if_reachable(params: dict[str, Any]) -> bool:
        try:
            return delivers(params)
        except Unreachable as exc:
            logger.debug("The server itself is not reachable: %s", exc)
            return False

    def _direct(self, configured: dict[str, Any]) -> dict[str, Any] | None:
        try:
            host, port = server_address(configured)
        except Exception as exc:
            logger.debug("Could not ask the server its address: %s", exc)
            return None
        if port is None:  # a Unix socket: no pooler's port to tell apart
            return None
        direct = {**configured, "port": port}
        if host is not None:
            direct["host"] = host
        if direct == configured:
            return None  # the same target that did not deliver
        return direct


__all__ = ["ListenTarget", "Unreachable", "delivers", "psycopg_params", "server_address"]
