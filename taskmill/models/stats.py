"""Per-minute rollups of finished attempts: what the dashboard's charts and the metrics read.

Workers add to them in the transaction that writes their batch of outcomes, so a chart never
scans the runs table (millions of rows) and its figures agree with the outcomes written.
One row per (minute, queue, task, status) holds a count, sums, and two histograms: how long
attempts ran, and how long they waited between becoming available and starting. Fixed
buckets let concurrent workers add to the same row with one UPDATE (no read-modify-write),
at the cost of percentiles known to a bucket, which is what a chart needs.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from django.db import models
from django.utils.translation import gettext_lazy as _

# Upper bounds of the histogram buckets, in milliseconds; the last is open-ended.
BUCKET_BOUNDS_MS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, math.inf,
)  # fmt: skip
DURATION_COLUMNS = tuple(f"d{index:02d}" for index in range(len(BUCKET_BOUNDS_MS)))
LATENCY_COLUMNS = tuple(f"l{index:02d}" for index in range(len(BUCKET_BOUNDS_MS)))


def bucket_of(milliseconds: float) -> int:
    """The index of the bucket holding ``milliseconds`` (negative values count as 0)."""
    return bisect.bisect_left(BUCKET_BOUNDS_MS, max(milliseconds, 0.0))


def percentile_ms(counts: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` percentile (0.5, 0.95) of a histogram, interpolated in its bucket.

    None for an empty histogram. In the open-ended last bucket, its lower bound (the true
    value is at least that).
    """
    total = sum(counts)
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = BUCKET_BOUNDS_MS[index - 1] if index else 0.0
            high = BUCKET_BOUNDS_MS[index]
            if math.isinf(high):
                return low
            return low + (high - low) * (rank - seen) / count
        seen += count
    return BUCKET_BOUNDS_MS[-2]


class _Rollup(models.Model):
    """What one row of a rollup holds: attempts that ended in one period, for one queue, task
    and status. ``status`` is how the attempt was written: SUCCESSFUL, FAILED, CANCELLED, or
    READY (it failed and will be retried)."""

    id = models.BigAutoField(primary_key=True)
    queue_name = models.CharField(_("queue"), max_length=64)
    task_path = models.CharField(_("task"), max_length=255)
    status = models.CharField(_("status"), max_length=10)
    count = models.PositiveBigIntegerField(_("attempts"), default=0)
    duration_sum = models.FloatField(_("seconds running, summed"), default=0.0)
    latency_sum = models.FloatField(_("seconds waiting to start, summed"), default=0.0)
    # The histogram columns (d00..d15 for durations, l00..l15 for latencies) are added
    # below the classes: 32 fields written out would hide the ones that matter.

    class Meta:
        abstract = True

    def durations(self) -> list[int]:
        return [getattr(self, column) for column in DURATION_COLUMNS]

    def latencies(self) -> list[int]:
        return [getattr(self, column) for column in LATENCY_COLUMNS]


class RunStats(_Rollup):
    """Per minute: the last hour's chart, the metrics' last minute."""

    minute = models.DateTimeField(_("minute"))

    class Meta:
        db_table = "taskmill_run_stats"
        verbose_name = _("run statistics per minute")
        verbose_name_plural = _("run statistics per minute")
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "queue_name", "task_path", "status"],
                name="taskmill_run_stats_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.queue_name} {self.task_path} {self.status}"


class RunStatsHourly(_Rollup):
    """Per hour, written with the minutes: the day's and the week's charts read 60 times
    fewer rows (a week of 20 busy tasks is 400,000 minute rows, 7,000 hour rows)."""

    hour = models.DateTimeField(_("hour"))

    class Meta:
        db_table = "taskmill_run_stats_hourly"
        verbose_name = _("run statistics per hour")
        verbose_name_plural = _("run statistics per hour")
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "queue_name", "task_path", "status"],
                name="taskmill_run_stats_hourly_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.queue_name} {self.task_path} {self.status}"


class RunStatsTotal(_Rollup):
    """What the pruned hours held, per queue, task and status, added up: the metrics'
    counters are these plus the hours still kept, so they only grow when old hours go."""

    class Meta:
        db_table = "taskmill_run_stats_total"
        verbose_name = _("run statistics before the kept hours")
        verbose_name_plural = _("run statistics before the kept hours")
        constraints = [
            models.UniqueConstraint(
                fields=["queue_name", "task_path", "status"], name="taskmill_run_stats_total_key"
            )
        ]

    def __str__(self) -> str:
        return f"until the kept hours: {self.queue_name} {self.task_path} {self.status}"


for _model in (RunStats, RunStatsHourly, RunStatsTotal):
    for _column in (*DURATION_COLUMNS, *LATENCY_COLUMNS):
        _model.add_to_class(_column, models.PositiveBigIntegerField(default=0))
