"""pgqueuer 1.6: asyncio; its worker is `pgq run module:factory`, or `pgqueuer.run(factory)`.

A worker is named by a variant, `<how>-<driver>-b<batch>[-l<limit>]` (the ones measured are
listed in bench/systems.py):

- how it starts: `cli` is what `pgq run` runs: its logger set up at WARNING, then its
  supervisor, `pgqueuer.run(factory, batch_size=B)`, on the loop its command picks (uvloop,
  a dependency of pgqueuer on Linux). Not the command itself: in 1.6.0 `pgq run` fails at
  start-up at any `--log-level` (the option's parser hands the logger a str, not the enum).
  `run` is the library call as its docstring shows it, `asyncio.run(pgqueuer.run(factory))`:
  the same supervisor on the standard asyncio loop. `qm` is `cli` with a factory that
  yields a bare QueueManager (no SchedulerManager beside it);
- the driver the factory builds: `asyncpg` (AsyncpgDriver, one connection), `pool`
  (AsyncpgPoolDriver) or `psycopg` (PsycopgDriver, an autocommit AsyncConnection);
- `--batch-size`; and `-l<N>`, the `noop` entrypoint's `concurrency_limit` (none without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from common import main, pg_dsn, record_probe
from pg_base import PgAdapter

# The line with an entrypoint concurrency_limit (drain c=1, c=2, latency): what a user runs.
DEFAULT = "cli-asyncpg-b10"


async def make_driver(kind: str) -> tuple[object, object]:
    """The driver the factory hands pgqueuer, and what to close when it is done."""
    if kind == "psycopg":
        import psycopg
        from pgqueuer import PsycopgDriver

        connection = await psycopg.AsyncConnection.connect(pg_dsn(), autocommit=True)
        return PsycopgDriver(connection), connection
    if kind == "pool":
        import asyncpg
        from pgqueuer import AsyncpgPoolDriver

        pool = await asyncpg.create_pool(pg_dsn())
        return AsyncpgPoolDriver(pool), pool
    import asyncpg
    from pgqueuer import AsyncpgDriver

    connection = await asyncpg.connect(pg_dsn())
    return AsyncpgDriver(connection), connection


@contextlib.asynccontextmanager
async def create_pgqueuer():
    from pgqueuer import PgQueuer, Queries, QueueManager

    driver, closable = await make_driver(os.environ.get("BENCH_PGQ_DRIVER", "asyncpg"))
    bare = os.environ.get("BENCH_PGQ_MANAGER") == "qm"
    manager = QueueManager(Queries(driver)) if bare else PgQueuer(driver)

    # C jobs at a time: the entrypoint's concurrency_limit (its documented way; enforced in
    # SQL). 0, its default, is no limit.
    limit = int(os.environ.get("BENCH_PGQ_LIMIT", "0"))

    @manager.entrypoint("noop", concurrency_limit=limit)
    async def noop(job: object) -> None:
        return None

    @manager.entrypoint("probe")
    async def probe(job: object) -> None:
        record_probe(int(job.payload))  # type: ignore[attr-defined]

    # The limits' figures (bench/limits.py): a sleep of the payload's milliseconds, and,
    # with BENCH_PGQ_KEYS=K, K no-op entrypoints k0..k<K-1>: pgqueuer's limits are per
    # entrypoint, so a limit per key is an entrypoint per key. The same limit as noop's.
    @manager.entrypoint("nap", concurrency_limit=limit)
    async def nap(job: object) -> None:
        await asyncio.sleep(int(job.payload) / 1000)  # type: ignore[attr-defined]

    for k in range(int(os.environ.get("BENCH_PGQ_KEYS", "0"))):
        manager.entrypoint(f"k{k}", concurrency_limit=limit)(noop)

    try:
        yield manager
    finally:
        await closable.close()


class PgqueuerAdapter(PgAdapter):
    name = "pgqueuer"
    tables = ("pgqueuer", "pgqueuer_log")

    def __init__(self) -> None:
        super().__init__()
        self.filled = 0
        self._queries = None
        self._enqueue_connection = None
        self._worker_env: dict[str, str] = {}

    @property
    def queries(self):
        if self._queries is None:
            from pgqueuer import Queries

            # the enqueue's driver: asyncpg, unless BENCH_PGQ_ENQUEUE_DRIVER says pool/psycopg
            kind = os.environ.get("BENCH_PGQ_ENQUEUE_DRIVER", "asyncpg")
            driver, self._enqueue_connection = self.run(make_driver(kind))
            self._queries = Queries(driver)
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

    def fill(self, n: int, kind: str = "noop") -> None:
        name, _, arg = kind.partition(":")
        if name in ("keyed", "unkeyed", "clustered"):  # as taskmill's (taskmill_adapter.py)
            keys = int(arg)
            spread = (lambda i: i * keys // n) if name == "clustered" else (lambda i: i % keys)
            entrypoints, payloads = [f"k{spread(i)}" for i in range(n)], [None] * n
        elif name in ("nap", "nap_limited"):  # the limit is the variant's (-l<N>)
            entrypoints, payloads = ["nap"] * n, [arg.encode()] * n
        else:
            self.enqueue_bulk(n)
            return
        self.run(self.queries.enqueue(entrypoints, payloads, [0] * n))
        self.filled += n

    def enqueue_probe(self, k: int) -> None:
        self.run(self.queries.enqueue("probe", str(k).encode()))

    def done_count(self) -> int:
        # A finished job leaves the queue table (moved to the log, in buffered batches).
        return self.filled - self.count("SELECT COUNT(*) FROM pgqueuer")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        # "default": C jobs at a time through the entrypoint's concurrency_limit (its
        # --max-concurrent-tasks must be at least twice the batch size, so it cannot say 1
        # or 2); "tuned": the same worker without a limit; else a variant's name.
        if variant == "default":
            variant = f"{DEFAULT}-l{concurrency}"
        how, driver, batch, *rest = (DEFAULT if variant == "tuned" else variant).split("-")
        limit = int(rest[0].removeprefix("l")) if rest else 0
        self._worker_env = {
            "BENCH_PGQ_DRIVER": driver,
            "BENCH_PGQ_MANAGER": "qm" if how == "qm" else "pgqueuer",
            "BENCH_PGQ_LIMIT": str(limit),
        }
        return [sys.executable, __file__, "worker", how, batch.removeprefix("b")]

    def worker_env(self) -> dict[str, str]:
        return super().worker_env() | self._worker_env

    def close(self) -> None:
        if self._enqueue_connection is not None:
            self.run(self._enqueue_connection.close())
        super().close()


def run_worker(how: str, batch_size: int) -> None:
    import asyncio

    import pgqueuer

    supervised = pgqueuer.run(create_pgqueuer, batch_size=batch_size)
    if how == "run":
        asyncio.run(supervised)
        return
    from pgqueuer.adapters.cli import cli
    from pgqueuer.core import logconfig

    # `pgq run`'s own steps, its --log-level given as the enum it expects
    logconfig.setup_fancy_logger(logconfig.LogLevel.WARNING)
    cli.asyncio_run(supervised)


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import pgqueuer_adapter

    if sys.argv[1] == "worker":
        pgqueuer_adapter.run_worker(sys.argv[2], int(sys.argv[3]))
    else:
        main(pgqueuer_adapter.PgqueuerAdapter())
