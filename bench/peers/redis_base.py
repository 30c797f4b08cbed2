"""What the Redis references share: a dedicated Redis database, emptied between measurements."""

from __future__ import annotations

import os

from common import Adapter


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


class RedisAdapter(Adapter):
    def __init__(self) -> None:
        import redis

        self.redis = redis.Redis.from_url(redis_url())
        self.filled = 0

    def reset(self) -> None:
        self.redis.flushdb()
        self.filled = 0

    def close(self) -> None:
        self.redis.close()
