"""pgqueuer 1.6: asyncio, asyncpg; its worker is `pgq run module:factory`."""

from __future__ import annotations

import contextlib
import os
import sys

from common import main, pg_dsn, record_probe
from pg_base import PgAdapter


@contextlib.asynccontextmanager
async def create_pgqueuer():
    import asyncpg
    from pgqueuer import AsyncpgDriver, PgQueuer

    connection = await asyncpg.connect(pg_dsn())
    pgq = PgQueuer(AsyncpgDriver(connection))

    # C jobs at a time: the entrypoint's concurrency_limit (its documented way; enforced in
    # SQL). 0, its default, is no limit (the "tuned" line).
    limit = int(os.environ.get("BENCH_PGQ_LIMIT", "0"))

    @pgq.entrypoint("noop", concurrency_limit=limit)
    async def noop(job: object) -> None:
        return None

    @pgq.entrypoint("probe")
    async def probe(job: object) -> None:
        record_probe(int(job.payload))  # type: ignore[attr-defined]

    try:
        yield pgq
    finally:
        await connection.close()


class PgqueuerAdapter(PgAdapter):
    name = "pgqueuer"
    tables = ("pgqueuer", "pgqueuer_log")

    def __init__(self) -> None:
        super().__init__()
        self.filled = 0
        self._queries = None

    @property
    def queries(self):
        if self._queries is None:
            import asyncpg
            from pgqueuer import AsyncpgDriver, Queries

            connection = self.run(asyncpg.connect(pg_dsn()))
            self._queries = Queries(AsyncpgDriver(connection))
        return self._queries

    def setup(self) -> None:
        import subprocess

        cmd = [sys.executable, "-m", "pgqueuer", "--pg-dsn", pg_dsn(), "install"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def reset(self) -> None:
        super().reset()
        self.filled = 0

    def enqueue_one(self) -> None:
        self.run(self.queries.enqueue("noop", None))

    def enqueue_bulk(self, n: int) -> None:
        self.run(self.queries.enqueue(["noop"] * n, [None] * n, [0] * n))
        self.filled += n

    def enqueue_probe(self, k: int) -> None:
        self.run(self.queries.enqueue("probe", str(k).encode()))

    def done_count(self) -> int:
        # A finished job leaves the queue table (moved to the log, in buffered batches).
        return self.filled - self.count("SELECT COUNT(*) FROM pgqueuer")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        # pgqueuer.run(), what `pgq run` calls, at its defaults (asyncpg, batch size 10,
        # LISTEN/NOTIFY). Not `pgq run` itself: in 1.6.0 it fails at start-up (its
        # --log-level default reaches the logger as a str, not the enum). Its
        # --max-concurrent-tasks must be at least twice the batch size, so C is the
        # entrypoint's concurrency_limit instead.
        limit = 0 if variant == "tuned" else concurrency
        return [sys.executable, __file__, "worker", str(limit)]


def run_worker(limit: int) -> None:
    import asyncio

    import pgqueuer

    os.environ["BENCH_PGQ_LIMIT"] = str(limit)
    asyncio.run(pgqueuer.run(create_pgqueuer))


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import pgqueuer_adapter

    if sys.argv[1] == "worker":
        pgqueuer_adapter.run_worker(int(sys.argv[2]))
    else:
        main(pgqueuer_adapter.PgqueuerAdapter())
