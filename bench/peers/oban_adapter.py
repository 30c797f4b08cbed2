"""oban-py 0.7 (package `oban`): the Python port of Oban; its worker is `oban start`."""

from __future__ import annotations

import subprocess
import sys

from common import main, pg_dsn, record_probe
from oban import Oban, worker
from pg_base import PgAdapter


@worker(queue="default")
class Noop:
    async def process(self, job: object) -> None:
        return None


@worker(queue="default")
class Probe:
    async def process(self, job: object) -> None:
        record_probe(int(job.args["k"]))  # type: ignore[attr-defined]


class ObanAdapter(PgAdapter):
    name = "oban-py"
    tables = ("oban_jobs",)

    def __init__(self) -> None:
        super().__init__()
        self._oban: Oban | None = None

    @property
    def oban(self) -> Oban:
        if self._oban is None:
            pool = self.run(Oban.create_pool(pg_dsn()))
            self._oban = Oban(pool=pool)  # no queues: client mode, it only inserts
        return self._oban

    def oban_cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "oban", *args]

    def setup(self) -> None:
        subprocess.run(
            self.oban_cli("install", "--dsn", pg_dsn()),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def enqueue_one(self) -> None:
        self.run(self.oban.enqueue(Noop.new()))

    def enqueue_bulk(self, n: int) -> None:
        self.run(self.oban.enqueue_many([Noop.new() for _ in range(n)]))

    def enqueue_probe(self, k: int) -> None:
        self.run(self.oban.enqueue(Probe.new({"k": k})))

    def done_count(self) -> int:
        return self.count("SELECT COUNT(*) FROM oban_jobs WHERE state = 'completed'")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        # --queues default:C is the queue's limit (jobs in flight); its log level is INFO by
        # default, which logs every job: WARNING here, as for every system.
        return self.oban_cli(
            "start",
            "--dsn",
            pg_dsn(),
            "--queues",
            f"default:{concurrency}",
            "--cron-modules",
            "oban_adapter",
            "--log-level",
            "WARNING",
        )


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import oban_adapter

    main(oban_adapter.ObanAdapter())
