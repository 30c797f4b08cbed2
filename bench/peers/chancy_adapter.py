"""chancy 0.26: psycopg 3; jobs run in a process pool by default; `chancy worker start`."""

from __future__ import annotations

import sys

from chancy import Chancy, Job, Queue
from common import main, pg_dsn, record_probe
from pg_base import PgAdapter

chancy_app = Chancy(pg_dsn())


def noop() -> None:
    return None


def probe(k: int) -> None:
    record_probe(k)


class ChancyAdapter(PgAdapter):
    name = "chancy"
    tables = ("chancy_jobs",)

    def __init__(self) -> None:
        super().__init__()
        self.opened = False

    def app(self) -> Chancy:
        if not self.opened:
            chancy_app.__enter__()
            self.opened = True
        return chancy_app

    def setup(self) -> None:
        self.run(chancy_app.migrate())
        self.declare(1)

    def declare(self, concurrency: int, polling_interval: int = 5) -> None:
        # Its defaults but the concurrency: ProcessExecutor, polling_interval 5 s (an integer
        # column) plus a NOTIFY on push that wakes the worker.
        queue = Queue("default", concurrency=concurrency, polling_interval=polling_interval)
        self.app().sync_declare(queue, upsert=True)

    def enqueue_one(self) -> None:
        self.app().sync_push(Job.from_func(noop))

    def enqueue_bulk(self, n: int) -> None:
        job = Job.from_func(noop)
        for _ in self.app().sync_push_many([job] * n):
            pass

    def enqueue_probe(self, k: int) -> None:
        self.app().sync_push(Job.from_func(probe, kwargs={"k": k}))

    def done_count(self) -> int:
        return self.count("SELECT COUNT(*) FROM chancy_jobs WHERE state = 'succeeded'")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        # tuned: polling_interval 0, no wait between fetches (its integer column allows
        # 5, 1 or 0 s; a pre-filled queue sends no NOTIFY, so the poll paces the drain)
        self.declare(concurrency, 0 if variant == "tuned" else 5)
        return [
            sys.executable,
            "-m",
            "chancy.cli.cli",
            "--app",
            "chancy_adapter.chancy_app",
            "worker",
            "start",
        ]

    def close(self) -> None:
        if self.opened:
            chancy_app.__exit__(None, None, None)
        super().close()


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import chancy_adapter

    main(chancy_adapter.ChancyAdapter())
