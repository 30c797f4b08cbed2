"""rq 2.12 on Redis (a reference); its worker is `rq worker` (a fork per job by default)."""

from __future__ import annotations

import sys

from common import main, record_probe
from redis_base import RedisAdapter, redis_url


def noop() -> None:
    return None


def probe(k: int) -> None:
    record_probe(k)


class RqAdapter(RedisAdapter):
    name = "rq"
    max_concurrency = 1  # one job at a time per worker process

    def __init__(self) -> None:
        super().__init__()
        from rq import Queue

        self.queue = Queue("bench", connection=self.redis)

    def enqueue_one(self) -> None:
        self.queue.enqueue(noop)

    def enqueue_bulk(self, n: int) -> None:
        from rq import Queue

        self.queue.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])

    def enqueue_probe(self, k: int) -> None:
        self.queue.enqueue(probe, k)

    def done_count(self) -> int:
        return self.queue.finished_job_registry.count

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        cmd = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url(), "--quiet"]
        if variant == "tuned":
            cmd += ["--worker-class", "rq.worker.SimpleWorker"]  # no fork per job
        return [*cmd, "bench"]


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import rq_adapter

    main(rq_adapter.RqAdapter())
