"""Adding a batch of finished attempts to the per-minute rollups (``RunStats``): the rows
to add, grouped here; the upsert that adds them is the engine's (``Engine.add_stats``).

Called inside the transaction that writes the outcomes: the rollups count exactly the
outcomes that landed, once, whatever crashes. Each (minute, queue, task, status) row is
upserted with increments, so concurrent workers add to the same row without reading it;
rows are written in key order, so two workers' batches lock them in the same order and
cannot deadlock on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..models.stats import BUCKET_BOUNDS_MS, DURATION_COLUMNS, LATENCY_COLUMNS, bucket_of

# (table, its period column, the period's length): minutes for the last hour's chart, hours
# for the day's and the week's. Written in this order, each in key order (no deadlocks).
TABLES = (
    ("taskmill_run_stats", "minute", timedelta(minutes=1)),
    ("taskmill_run_stats_hourly", "hour", timedelta(hours=1)),
)
HOURLY_TABLE = TABLES[1][0]  # what the pruner folds into the totals
KEY_COLUMNS = ("queue_name", "task_path", "status")
# Where the pruner adds the hours it deletes (RunStatsTotal): no period column.
TOTALS_TABLE = "taskmill_run_stats_total"
# A rollup's status for an attempt that snoozed (``raise taskmill.Snooze``): the run is READY
# again, as after a retry, but nothing went wrong, and the charts say so apart.
SNOOZED = "SNOOZED"
SUM_COLUMNS = ("count", "duration_sum", "latency_sum", *DURATION_COLUMNS, *LATENCY_COLUMNS)


@dataclass(frozen=True, slots=True)
class Ended:
    """One attempt that ended, as the rollups see it."""

    queue_name: str
    task_path: str
    status: str  # as written: SUCCESSFUL, FAILED, CANCELLED, READY (a retry), or SNOOZED
    finished_at: datetime
    duration: float  # seconds the task ran
    latency: float  # seconds from available to started


@dataclass(slots=True)
class StatsRow:
    start: datetime
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
        keys = [self.start, self.queue_name, self.task_path, self.status]
        sums = [self.count, self.duration_sum, self.latency_sum]
        return [*keys, *sums, *self.durations, *self.latencies]


def rollup(ended: Iterable[Ended], period: timedelta = timedelta(minutes=1)) -> list[StatsRow]:
    """Group attempts by (period, queue, task, status), in key order."""
    rows: dict[tuple[datetime, str, str, str], StatsRow] = {}
    for item in ended:
        start = _floor(item.finished_at, period)
        key = (start, item.queue_name, item.task_path, item.status)
        row = rows.get(key)
        if row is None:
            row = rows[key] = StatsRow(*key)
        row.add(item)
    return [rows[key] for key in sorted(rows)]


def _floor(moment: datetime, period: timedelta) -> datetime:
    if period >= timedelta(hours=1):
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


def coarser(rows: list[StatsRow], period: timedelta) -> list[StatsRow]:
    """Rows of a finer period added up into ``period``'s, in key order."""
    merged: dict[tuple[datetime, str, str, str], StatsRow] = {}
    for row in rows:
        key = (_floor(row.start, period), row.queue_name, row.task_path, row.status)
        into = merged.get(key)
        if into is None:
            into = merged[key] = StatsRow(*key)
        into.count += row.count
        into.duration_sum += row.duration_sum
        into.latency_sum += row.latency_sum
        into.durations = [a + b for a, b in zip(into.durations, row.durations, strict=True)]
        into.latencies = [a + b for a, b in zip(into.latencies, row.latencies, strict=True)]
    return [merged[key] for key in sorted(merged)]


def fold_hours(hours: Iterable[Any]) -> list[StatsRow]:
    """Hourly rollup rows (``RunStatsHourly``) summed per queue, task and status, in key
    order: what the pruner adds to the totals (``Engine.add_totals``)."""
    folded: dict[tuple[str, str, str], StatsRow] = {}
    for hour in hours:
        key = (hour.queue_name, hour.task_path, hour.status)
        row = folded.get(key)
        if row is None:
            row = folded[key] = StatsRow(datetime.min, *key)
        row.count += hour.count
        row.duration_sum += hour.duration_sum
        row.latency_sum += hour.latency_sum
        for index, column in enumerate(DURATION_COLUMNS):
            row.durations[index] += getattr(hour, column)
        for index, column in enumerate(LATENCY_COLUMNS):
            row.latencies[index] += getattr(hour, column)
    return [folded[key] for key in sorted(folded)]


def cumulative_sql(quote: Callable[[str], str]) -> str:
    """Every sum of the kept hours plus the pruned totals, per (queue, task, status), in one
    statement: a prune moving hours to the totals meanwhile is seen before or after, never
    half."""
    keys = ", ".join(quote(column) for column in KEY_COLUMNS)
    sums = ", ".join(f"SUM({quote(column)})" for column in SUM_COLUMNS)
    columns = ", ".join(quote(column) for column in SUM_COLUMNS)
    both = " UNION ALL ".join(
        f"SELECT {keys}, {columns} FROM {quote(table)}" for table in (TOTALS_TABLE, HOURLY_TABLE)
    )
    return f"SELECT {keys}, {sums} FROM ({both}) AS kept GROUP BY {keys}"


def cumulative_rows(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, str, str], dict[str, float]]:
    """``cumulative_sql``'s rows by key, each sum as a float (0 for none)."""
    width = len(KEY_COLUMNS)
    return {
        tuple(row[:width]): {
            column: float(value or 0)
            for column, value in zip(SUM_COLUMNS, row[width:], strict=True)
        }
        for row in rows
    }
