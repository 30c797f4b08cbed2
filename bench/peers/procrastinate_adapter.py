"""procrastinate 3.10: psycopg 3, LISTEN/NOTIFY; its worker is `procrastinate worker`."""

from __future__ import annotations

import sys

import procrastinate
from common import main, pg_dsn, record_probe
from pg_base import PgAdapter

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=pg_dsn()))


@app.task(name="noop")
async def noop() -> None:
    return None


@app.task(name="probe")
async def probe(k: int) -> None:
    record_probe(k)


class ProcrastinateAdapter(PgAdapter):
    name = "procrastinate"
    tables = ("procrastinate_jobs", "procrastinate_events")

    def __init__(self) -> None:
        super().__init__()
        app.open()

    def setup(self) -> None:
        app.schema_manager.apply_schema()

    def enqueue_one(self) -> None:
        noop.defer()

    def enqueue_bulk(self, n: int) -> None:
        noop.batch_defer(*([{}] * n))

    def enqueue_probe(self, k: int) -> None:
        probe.defer(k=k)

    def done_count(self) -> int:
        return self.count("SELECT COUNT(*) FROM procrastinate_jobs WHERE status = 'succeeded'")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "procrastinate",
            "--app",
            "procrastinate_adapter.app",
            "worker",
            "--concurrency",
            str(concurrency),
        ]

    def close(self) -> None:
        app.close()
        super().close()


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import procrastinate_adapter

    main(procrastinate_adapter.ProcrastinateAdapter())
