"""bench.retention's samples: one reading of the runs table and its counters, a row of the
table printed, and the row versions of the whole run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

TABLE = "taskmill_run"


@dataclass
class Sample:
    elapsed: float
    at: datetime  # the database's clock
    enqueued: int
    active: int  # READY, WAITING, RUNNING
    kept: int  # finished runs in the table
    expired: int  # of which past their expires_at: the pruner's backlog
    total: int  # pg_total_relation_size (heap, indexes, TOAST)
    heap: int
    indexes: int
    live: int
    dead: int
    updates: int
    hot: int
    autovacuums: int
    last_autovacuum: datetime | None
    lag_p50: float | None = None  # enqueue-to-start, ms, of the runs finished since the last
    lag_p95: float | None = None
    drain: float | None = None  # runs finished a second since the last sample

    @property
    def finished(self) -> int:
        return self.enqueued - self.active


SAMPLE_SQL = f"""
SELECT clock_timestamp(), pg_total_relation_size(c.oid), pg_relation_size(c.oid),
       pg_indexes_size(c.oid), s.n_live_tup, s.n_dead_tup, s.n_tup_upd, s.n_tup_hot_upd,
       s.autovacuum_count, s.last_autovacuum
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.relname = '{TABLE}'
"""


def take_sample(elapsed: float, previous: Sample | None) -> Sample:
    from django.db import connection

    from taskmill.status import ACTIVE_STATUSES

    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value, is_called FROM taskmill_run_id_seq")
        last, called = cursor.fetchone()
        cursor.execute(f"SELECT status, count(*) FROM {TABLE} GROUP BY status")
        by_status = dict(cursor.fetchall())
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE expires_at <= now()")
        (expired,) = cursor.fetchone()
        cursor.execute(SAMPLE_SQL)
        at, total, heap, indexes, live, dead, upd, hot, autovacuums, last_av = cursor.fetchone()
        lag = (None, None)
        if previous is not None:
            cursor.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP "
                "(ORDER BY extract(epoch FROM started_at - enqueued_at)) "
                f"FROM {TABLE} WHERE finished_at > %s",
                [previous.at],
            )
            lag = cursor.fetchone()[0] or (None, None)
    active = sum(by_status.get(status, 0) for status in ACTIVE_STATUSES)
    sample = Sample(
        elapsed=elapsed,
        at=at,
        enqueued=last if called else 0,
        active=active,
        kept=sum(by_status.values()) - active,
        expired=expired,
        total=total,
        heap=heap,
        indexes=indexes,
        live=live,
        dead=dead,
        updates=upd,
        hot=hot,
        autovacuums=autovacuums,
        last_autovacuum=last_av,
        lag_p50=None if lag[0] is None else lag[0] * 1000,
        lag_p95=None if lag[1] is None else lag[1] * 1000,
    )
    if previous is not None:
        sample.drain = (sample.finished - previous.finished) / (elapsed - previous.elapsed)
    return sample


HEADER = (
    f"{'t s':>6} {'enqueued':>9} {'finished':>9} {'drain/s':>7} {'lag p50/p95 ms':>14} "
    f"{'kept':>8} {'expired':>7} {'total MB':>8} {'heap':>6} {'index':>6} {'n_live':>8} "
    f"{'n_dead':>8} {'HOT%':>5} {'av':>3} {'last autovacuum':>15} {'load':>5}"
)


def row(sample: Sample, previous: Sample | None) -> str:
    mb = 1024 * 1024
    lag = "-"
    if sample.lag_p50 is not None and sample.lag_p95 is not None:
        lag = f"{sample.lag_p50:.0f}/{sample.lag_p95:.0f}"
    hot = "-"
    if previous is not None and sample.updates > previous.updates:
        hot = f"{100 * (sample.hot - previous.hot) / (sample.updates - previous.updates):.0f}"
    drain = "-" if sample.drain is None else f"{sample.drain:,.0f}"
    last = sample.last_autovacuum.strftime("%H:%M:%S") if sample.last_autovacuum else "never"
    return (
        f"{sample.elapsed:>6.0f} {sample.enqueued:>9,} {sample.finished:>9,} {drain:>7} "
        f"{lag:>14} {sample.kept:>8,} {sample.expired:>7,} {sample.total / mb:>8.1f} "
        f"{sample.heap / mb:>6.1f} {sample.indexes / mb:>6.1f} {sample.live:>8,} "
        f"{sample.dead:>8,} {hot:>5} {sample.autovacuums:>3} {last:>15} "
        f"{os.getloadavg()[0]:>5.1f}"
    )


def row_versions() -> str:
    """Updates a run and the share of them that were HOT, over the whole run."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables "
            "WHERE relname = %s",
            [TABLE],
        )
        inserted, updated, hot, deleted = cursor.fetchone()
    return (
        f"rows: {inserted:,} inserted, {updated:,} updated ({updated / max(inserted, 1):.2f} a "
        f"run; {hot:,} HOT, {100 * hot / max(updated, 1):.1f}%), {deleted:,} deleted"
    )
