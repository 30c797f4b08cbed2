"""dj-queue 0.14: a Solid Queue-like backend for Django's tasks API (supervisor + workers)."""

from __future__ import annotations

from common import main
from django_base import DjangoAdapter


class DjQueueAdapter(DjangoAdapter):
    name = "dj-queue"

    def __init__(self) -> None:
        super().__init__("dj-queue")
        from benchtasks import tasks as djtasks

        self.t = djtasks
        self.tables = ("dj_queue_jobs",)
        self.concurrency = 3

    def enqueue_one(self) -> None:
        self.t.noop.enqueue()

    def enqueue_bulk(self, n: int) -> None:
        from django.tasks import task_backends

        # its backend's enqueue_all(): one bulk insert of the jobs and their executions
        task_backends["default"].enqueue_all([(self.t.noop, (), {})] * n)

    def enqueue_probe(self, k: int) -> None:
        self.t.probe.enqueue(k)

    def done_count(self) -> int:
        return self.count("SELECT COUNT(*) FROM dj_queue_jobs WHERE finished_at IS NOT NULL")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        self.concurrency = concurrency
        return self.manage("dj_queue")

    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        env["BENCH_CONCURRENCY"] = str(self.concurrency)  # the worker's thread count
        return env


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import djqueue_adapter

    main(djqueue_adapter.DjQueueAdapter())
