"""What the PostgreSQL peers that are not Django apps share: a psycopg connection to count."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from common import Adapter, pg_dsn

T = TypeVar("T")


class PgAdapter(Adapter):
    tables: tuple[str, ...] = ()

    def __init__(self) -> None:
        import psycopg

        self.conn = psycopg.connect(pg_dsn(), autocommit=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def count(self, statement: str) -> int:
        return int(self.conn.execute(statement).fetchone()[0])

    def reset(self) -> None:
        self.conn.execute(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY CASCADE")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of an asyncio-first peer on one loop kept for the whole process."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        self.conn.close()
