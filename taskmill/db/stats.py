"""Adding a batch of finished attempts to the per-minute rollups (``RunStats``).

Called inside the transaction that writes the outcomes: the rollups count exactly the
outcomes that landed, once, whatever crashes. Each (minute, queue, task, status) row is
upserted with increments, so concurrent workers add to the same row without reading it;
rows are written in key order, so two workers' batches lock them in the same order and
cannot deadlock on each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connections

from ..models.stats import BUCKET_BOUNDS_MS, DURATION_COLUMNS, LATENCY_COLUMNS, bucket_of

STATS_TABLE = "taskmill_run_stats"
KEY_COLUMNS = ("minute", "queue_name", "task_path", "status")
SUM_COLUMNS = ("count", "duration_sum", "latency_sum", *DURATION_COLUMNS, *LATENCY_COLUMNS)


@dataclass(frozen=True, slots=True)
class Ended:
    """One attempt that ended, as the rollups see it."""

    queue_name: str
    task_path: str
    status: str  # as written: SUCCESSFUL, FAILED, CANCELLED, or READY (a retry)
    finished_at: datetime
    duration: float  # seconds the task ran
    latency: float  # seconds from available to started


@dataclass(slots=True)
class StatsRow:
    minute: datetime
    queue_name: str
    task_path: str
    status: str
    count: int = 0
    duration_sum: float = 0.0
    latency_sum: float = 0.0
    durations: list[int] = field(default_factory=lambda: [0] * len(BUCKET_BOUNDS_MS))
    latencies: list[int] = field(default_factory=lambda: [0] * len(BUCKET_BOUNDS_MS))

    def add(self, ended: Ended) -> None:
        self.count += 1
        self.duration_sum += ended.duration
        self.latency_sum += ended.latency
        self.durations[bucket_of(ended.duration * 1000)] += 1
        self.latencies[bucket_of(ended.latency * 1000)] += 1

    def values(self) -> list[object]:
        keys = [self.minute, self.queue_name, self.task_path, self.status]
        sums = [self.count, self.duration_sum, self.latency_sum]
        return [*keys, *sums, *self.durations, *self.latencies]


def rollup(ended: Iterable[Ended]) -> list[StatsRow]:
    """Group attempts by (minute, queue, task, status), in key order."""
    rows: dict[tuple[datetime, str, str, str], StatsRow] = {}
    for item in ended:
        minute = item.finished_at.replace(second=0, microsecond=0)
        key = (minute, item.queue_name, item.task_path, item.status)
        row = rows.get(key)
        if row is None:
            row = rows[key] = StatsRow(*key)
        row.add(item)
    return [rows[key] for key in sorted(rows)]


def add_stats(database: str, ended: Iterable[Ended]) -> None:
    """Add these attempts to the rollups (call inside the outcomes' transaction)."""
    rows = rollup(ended)
    if not rows:
        return
    connection = connections[database]
    params = [_adapted(connection, row.values()) for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(_upsert_sql(connection), params)


def _adapted(connection, values: list[object]) -> list[object]:
    minute = values[0]
    adapted = connection.ops.adapt_datetimefield_value(minute)
    return [adapted, *values[1:]]


_SQL_CACHE: dict[str, str] = {}


def _upsert_sql(connection) -> str:
    vendor = connection.vendor
    if vendor not in _SQL_CACHE:
        quote = connection.ops.quote_name
        columns = [*KEY_COLUMNS, *SUM_COLUMNS]
        insert = (
            f"INSERT INTO {quote(STATS_TABLE)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        if vendor == "mysql":
            updates = ", ".join(
                f"{quote(c)} = {quote(c)} + VALUES({quote(c)})" for c in SUM_COLUMNS
            )
            sql = f"{insert} ON DUPLICATE KEY UPDATE {updates}"
        else:  # PostgreSQL and SQLite speak the same upsert
            table = quote(STATS_TABLE)
            updates = ", ".join(
                f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in SUM_COLUMNS
            )
            conflict = ", ".join(quote(c) for c in KEY_COLUMNS)
            sql = f"{insert} ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
        _SQL_CACHE[vendor] = sql
    return _SQL_CACHE[vendor]
