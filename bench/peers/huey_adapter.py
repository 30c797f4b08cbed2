"""huey 3.5 on Redis (a reference, not a database queue); its worker is huey_consumer."""

from __future__ import annotations

import os
import sys

from common import main, record_probe
from huey import RedisHuey
from redis_base import RedisAdapter, redis_url

huey = RedisHuey("bench", url=redis_url())


@huey.task()
def noop() -> None:
    return None


@huey.task()
def probe(k: int) -> None:
    record_probe(k)


class HueyAdapter(RedisAdapter):
    name = "huey"
    bulk_supported = False  # no bulk enqueue API

    def enqueue_one(self) -> None:
        noop()

    def fill(self, n: int, kind: str = "noop") -> None:
        for _ in range(n):
            noop()
        self.filled += n

    def enqueue_probe(self, k: int) -> None:
        probe(k)

    def done_count(self) -> int:
        return self.filled - huey.pending_count()

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        # Its defaults (thread workers, blocking BRPOP on Redis) but the worker count.
        consumer = os.path.join(os.path.dirname(sys.executable), "huey_consumer")
        return [sys.executable, consumer, "huey_adapter.huey", "-w", str(concurrency), "-q"]


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import huey_adapter

    main(huey_adapter.HueyAdapter())
