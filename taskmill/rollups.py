"""Reading the per-minute rollups (``RunStats``): time series for the dashboard's charts and
totals for the metrics. Reads a few hundred aggregated rows, never the runs table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, Sum
from django.utils import timezone

from .db.stats import SNOOZED
from .models.stats import (
    BUCKET_BOUNDS_MS,
    DURATION_COLUMNS,
    LATENCY_COLUMNS,
    RunStats,
    RunStatsHourly,
)
from .models.stats import percentile_ms as _percentile
from .status import RunStatus

# How each status is shown: a retry is written as READY, a snooze as SNOOZED.
OUTCOMES = {
    RunStatus.SUCCESSFUL: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.READY: "retried",
    SNOOZED: "snoozed",
    RunStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class Window:
    """A chart's time range and the width of its bars."""

    name: str
    label: str
    span: timedelta
    step: timedelta


WINDOWS = {
    window.name: window
    for window in (
        Window("hour", "last hour", timedelta(hours=1), timedelta(minutes=1)),
        Window("day", "last day", timedelta(days=1), timedelta(hours=1)),
        Window("week", "last week", timedelta(days=7), timedelta(hours=1)),
    )
}


@dataclass
class Point:
    """One bar of a chart: the attempts that ended in [start, start + step)."""

    start: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES.values(), 0))
    durations: list[int] = field(default_factory=lambda: [0] * len(BUCKET_BOUNDS_MS))
    latencies: list[int] = field(default_factory=lambda: [0] * len(BUCKET_BOUNDS_MS))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def duration_ms(self, fraction: float) -> float | None:
        return _percentile(self.durations, fraction)

    def latency_ms(self, fraction: float) -> float | None:
        return _percentile(self.latencies, fraction)


def series(
    window: Window,
    *,
    database: str = "default",
    queue: str | None = None,
    task: str | None = None,
    now: datetime | None = None,
) -> list[Point]:
    """The window's bars, oldest first, empty ones included (a gap is information too)."""
    now = now or timezone.now()
    end = _floor(now, window.step) + window.step
    start = end - window.span
    # Hour-wide bars read the hourly rollups: 60 times fewer rows than the minutes.
    hourly = window.step >= timedelta(hours=1)
    model, period = (RunStatsHourly, "hour") if hourly else (RunStats, "minute")
    rows = model.objects.using(database).filter(**{f"{period}__gte": start, f"{period}__lt": end})
    if queue:
        rows = rows.filter(queue_name=queue)
    if task:
        rows = rows.filter(task_path=task)
    # Summed in the database per bar: a few hundred rows back whatever the number of tasks.
    when = F(period)
    sums = {column: Sum(column) for column in ("count", *DURATION_COLUMNS, *LATENCY_COLUMNS)}
    grouped = rows.annotate(when=when).values("when", "status").annotate(**sums).order_by()
    points = [Point(start + window.step * index) for index in range(int(window.span / window.step))]
    for row in grouped:
        index = int((row["when"] - start) / window.step)
        if not 0 <= index < len(points):
            continue
        point = points[index]
        outcome = OUTCOMES.get(row["status"])
        if outcome is not None:
            point.counts[outcome] += row["count"] or 0
        for bucket, column in enumerate(DURATION_COLUMNS):
            point.durations[bucket] += row[column] or 0
        for bucket, column in enumerate(LATENCY_COLUMNS):
            point.latencies[bucket] += row[column] or 0
    return points


def _floor(moment: datetime, step: timedelta) -> datetime:
    """``moment`` rounded down to a multiple of ``step`` (steps divide an hour or a day)."""
    epoch = datetime(2000, 1, 1, tzinfo=moment.tzinfo)
    return epoch + ((moment - epoch) // step) * step


def recent_names(field: str, *, database: str = "default", within: timedelta = timedelta(days=1)):
    """The queues (``field="queue_name"``) or tasks (``"task_path"``) that ended attempts
    within the last day: read from that day's hourly rollups only, a range of their index."""
    since = timezone.now() - within - timedelta(hours=1)
    rows = RunStatsHourly.objects.using(database).filter(hour__gte=since)
    return set(rows.values_list(field, flat=True).distinct())
