"""celery 5.7 on Redis (a reference); its worker is `celery worker` (prefork pool)."""

from __future__ import annotations

import sys

from celery import Celery
from common import main, record_probe
from redis_base import RedisAdapter, redis_url

app = Celery("bench", broker=redis_url())
app.conf.task_ignore_result = True  # no result backend: nothing to store for a no-op


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="probe")
def probe(k: int) -> None:
    record_probe(k)


class CeleryAdapter(RedisAdapter):
    name = "celery"
    bulk_supported = False  # no bulk enqueue API (a group sends its messages one by one)

    def enqueue_one(self) -> None:
        noop.delay()

    def fill(self, n: int, kind: str = "noop") -> None:
        for _ in range(n):
            noop.delay()
        self.filled += n

    def enqueue_probe(self, k: int) -> None:
        probe.delay(k)

    def done_count(self) -> int:
        # Messages still in the list plus those delivered to the worker and not yet acked
        # (with the default early ack, a message is acked when its task starts).
        waiting = self.redis.llen("celery") + self.redis.hlen("unacked")
        return self.filled - waiting

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_adapter",
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ]


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import celery_adapter

    main(celery_adapter.CeleryAdapter())
