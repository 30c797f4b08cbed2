"""What flow control holds back, and why, as the control room, ``taskmill status`` and the
metrics show it. Reads only: nothing here takes, frees or moves a slot.

- ``why_held(run)``: one READY run, in a sentence ("waiting for a slot: concurrency key
  acct-7 (1 of 1 in use)").
- ``queue_reports()``: per queue, the limits in force and where they come from, the slots in
  use, what is held back and under which keys most.

What is in use is counted as the gate counts it: RUNNING runs with the key (or in the
queue), and a rate's starts in its window. Held-back runs are read through ``HeldIndex``
(its condition spelt as the engine spells it, which SQLite needs to use it); RUNNING runs
are few. Every query here is bounded by active runs, never by the runs table's size.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Count, Min, Q
from django.utils import timezone

from .. import overview
from ..db import get_engine
from ..db.records import RUN_TABLE
from ..models import Limit, LimitStart, Queue, Run, RunStatus
from ..registry import resolve_or_none
from .gate import rate_window
from .queues import QueueLimits, configured_limits, row_limits
from .rates import Rate

# The keys listed per queue, those holding back the most runs first.
TOP_KEYS = 5


# -- one run ----------------------------------------------------------------------------------


def why_held(run: Run, database: str = "default", now: datetime | None = None) -> str | None:
    """Why a READY run is not starting, in a sentence; None if no limit holds it back."""
    if run.status != RunStatus.READY:
        return None
    now = now or timezone.now()
    if run.held_by:
        kind, _, key = run.held_by.partition(":")
        if kind == "concurrency":
            return _concurrency_reason(database, key)
        if kind == "rate":
            return _rate_reason(database, key, now)
        if kind == "fair":
            return _fair_reason(database, run)
        return f"held back by {run.held_by}"
    if not run.due or run.available_at > now:
        return None  # deferred to later: a time holds it, not a limit
    row = Queue.objects.using(database).filter(pk=run.queue_name, at_limit=True).first()
    return _queue_reason(database, row, now) if row is not None else None


def _task_and_value(key: str) -> tuple[str, str]:
    """A task's key ("<task path>[:<value>]", taskmill.limits.keys) split; a task path
    holds no colon."""
    task_path, _, value = key.partition(":")
    return task_path, value


def _concurrency_reason(database: str, key: str) -> str:
    row = Limit.objects.using(database).filter(pk=f"concurrency:{key}").first()
    task_path, value = _task_and_value(key)
    limit = row.concurrency_limit if row is not None else None
    if limit is None:  # no row yet: the code's own limit
        limit = getattr(resolve_or_none(task_path), "concurrency_limit", None)
    in_use = _count(database, "running_condition", "concurrency_key", key)
    used = f"{in_use} of {limit} in use" if limit is not None else f"{in_use} in use"
    if value:
        return f"waiting for a slot: concurrency key {value} ({used})"
    return f"waiting for a slot: concurrency limit of {task_path} ({used})"


def _rate_reason(database: str, key: str, now: datetime) -> str:
    row = Limit.objects.using(database).filter(pk=f"rate:{key}").first()
    task_path, value = _task_and_value(key)
    rate = None
    if row is not None and row.rate_count and row.rate_seconds:
        rate = Rate(row.rate_count, timedelta(seconds=row.rate_seconds))
    elif (task := resolve_or_none(task_path)) is not None:
        rate = task.rate_limit
    named = f"key {value}" if value else task_path
    spelt = f" ({rate})" if rate is not None else ""
    frees = _window_frees(database, f"rate:{key}", rate, now) if rate is not None else None
    return f"rate limit of {named}{spelt}: {_next_start(frees, now)}"


def _fair_reason(database: str, run: Run) -> str:
    held = _count(database, "held_condition", "held_by", run.held_by)
    key = run.fair_key or run.held_by.split(":", 2)[-1]
    runs = "run" if held == 1 else "runs"
    return f"taking turns with other keys: fair key {key} ({held:,} of its {runs} held back)"


def _queue_reason(database: str, row: Queue, now: datetime) -> str:
    limits = row_limits(row, configured_limits(database))
    in_use = _count(database, "running_condition", "queue_name", row.name)
    limit = limits.concurrency_limit
    if limits.rate is not None and (limit is None or in_use < limit):
        frees = _window_frees(database, f"queue:{row.name}", limits.rate, now)
        next_start = _next_start(frees, now)
        return f"queue {row.name} at its rate limit ({limits.rate}): {next_start}"
    if limit is not None:
        return f"queue {row.name} at its limit ({in_use} of {limit} in use)"
    return f"queue {row.name} at its limit"


def _count(database: str, condition: str, column: str, value: str) -> int:
    """Active runs (``condition``: the engine's spelling of an index's, which SQLite needs
    to use it) whose ``column`` is ``value``."""
    where = getattr(get_engine(database), condition)
    with connections[database].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {RUN_TABLE} WHERE {where} AND {column} = %s", [value])
        return int(cursor.fetchone()[0])


def _window_frees(database: str, key: str, rate: Rate, now: datetime) -> datetime | None:
    """When the oldest start the rate counts leaves its window (a start let go and not
    begun yet counts from when it was let go)."""
    window = rate_window(rate)
    oldest = (
        LimitStart.objects.using(database)
        .filter(key=key, started_at__gt=now - window)
        .aggregate(oldest=Min("started_at"))["oldest"]
    )
    return None if oldest is None else oldest + window


def _next_start(release_at: datetime | None, now: datetime) -> str:
    if release_at is None or release_at <= now:
        return "next start due now"
    return f"next start in {math.ceil((release_at - now).total_seconds())} s"


# -- queues -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldKey:
    """A key holding back runs of a queue."""

    key: str  # as ``Run.held_by`` holds it: "concurrency:<task>[:<key>]", "rate:…", "fair:…"
    kind: str  # concurrency, rate or fair
    label: str  # as shown: "acct-7 of sync_account", "two_at_a_time", "A" (key_label)
    held: int


@dataclass(frozen=True)
class QueueReport:
    """A queue's limits and what they hold back now."""

    name: str
    concurrency_limit: int | None  # in force
    rate_limit: str | None  # in force, spelt as "10/m"
    set_at_run_time: bool  # the limits in force were set at run time, not in the settings
    limits_set_at: datetime | None
    settings: dict[str, int | str | None]  # OPTIONS["QUEUE_LIMITS"]'s, whether in force or not
    in_use: int  # RUNNING runs of the queue: the slots its concurrency limit counts
    started_in_window: int | None  # starts its rate counts now (None: no rate limit)
    at_limit: bool  # claims pass the queue over until a slot frees
    release_at: datetime | None
    held: int  # READY runs of the queue held back by a task's key or a fair share
    top_held_keys: list[HeldKey] = field(default_factory=list)

    @property
    def limited(self) -> bool:
        return self.concurrency_limit is not None or self.rate_limit is not None


def queue_reports(
    database: str = "default", queues: Sequence[overview.QueueOverview] | None = None
) -> dict[str, QueueReport]:
    """One report per queue of the overview (``queues``, when the caller has it already),
    by name. Three queries at most, whatever the number of queues: the queue rows, the
    held-back runs per key, and the starts of the rate-limited queues."""
    if queues is None:
        queues = overview.queue_overview(database)
    configured = configured_limits(database)
    rows = {row.name: row for row in Queue.objects.using(database)}
    in_force = {queue.name: _in_force(queue.name, rows, configured) for queue in queues}
    held_keys = _held_keys(database) if any(queue.held for queue in queues) else {}
    now = timezone.now()
    starts = _starts_in_window(database, in_force, now)
    reports = {}
    for queue in queues:
        row, limits = rows.get(queue.name), in_force[queue.name]
        settings = configured.get(queue.name, QueueLimits())
        reports[queue.name] = QueueReport(
            name=queue.name,
            concurrency_limit=limits.concurrency_limit,
            rate_limit=None if limits.rate is None else str(limits.rate),
            set_at_run_time=row is not None and row.limits_set_at is not None,
            limits_set_at=row.limits_set_at if row is not None else None,
            settings={
                "concurrency_limit": settings.concurrency_limit,
                "rate_limit": None if settings.rate is None else str(settings.rate),
            },
            in_use=queue.running,
            started_in_window=starts.get(queue.name) if limits.rate is not None else None,
            at_limit=bool(row is not None and row.at_limit),
            release_at=row.release_at if row is not None else None,
            held=queue.held,
            top_held_keys=held_keys.get(queue.name, [])[:TOP_KEYS],
        )
    return reports


def _in_force(name: str, rows: dict[str, Queue], configured: dict[str, QueueLimits]) -> QueueLimits:
    """A queue's limits in force (``row_limits``), a queue without a row included."""
    row = rows.get(name)
    return row_limits(row, configured) if row is not None else configured.get(name, QueueLimits())


def _held_keys(database: str) -> dict[str, list[HeldKey]]:
    """Per queue, the keys holding back its runs, most first (ties by key)."""
    engine = get_engine(database)
    with connections[database].cursor() as cursor:
        cursor.execute(
            f"SELECT queue_name, held_by, COUNT(*) FROM {RUN_TABLE} "
            f"WHERE {engine.held_condition} GROUP BY queue_name, held_by"
        )
        found = cursor.fetchall()
    per_queue: dict[str, list[HeldKey]] = defaultdict(list)
    for queue, key, count in found:
        kind = key.partition(":")[0]
        per_queue[queue].append(HeldKey(key, kind, key_label(key), int(count)))
    for keys in per_queue.values():
        keys.sort(key=lambda held: (-held.held, held.key))
    return per_queue


def key_label(held_by: str) -> str:
    """A key as a person reads it, short: "acct-7 of sync_account" (a task's key),
    "two_at_a_time" (a task-wide limit), "A" (a fair key); its kind is said beside it."""
    kind, _, key = held_by.partition(":")
    if kind == "fair":
        return key.partition(":")[2] or key
    task_path, value = _task_and_value(key)
    task = task_path.rpartition(".")[2]
    return f"{value} of {task}" if value else task


def short_key_label(held_by: str) -> str:
    """A key in fewer words, for a narrow cell: its value ("acct-7", "A"), or the task of a
    task-wide limit ("two_at_a_time")."""
    kind, _, key = held_by.partition(":")
    if kind == "fair":
        return key.partition(":")[2] or key
    task_path, value = _task_and_value(key)
    return value or task_path.rpartition(".")[2]


def _starts_in_window(
    database: str, in_force: dict[str, QueueLimits], now: datetime
) -> dict[str, int]:
    """The starts each rate-limited queue's rate counts now, in one query (the window the
    gate counts: taskmill.limits.gate.Gauge.window)."""
    windows = {
        f"queue:{name}": now - _window(limits.rate)
        for name, limits in in_force.items()
        if limits.rate is not None
    }
    if not windows:
        return {}
    since = Q()
    for key, start in windows.items():
        since |= Q(key=key, started_at__gt=start)
    counted = (
        LimitStart.objects.using(database)
        .filter(since)
        .values("key")
        .annotate(n=Count("pk"))
        .order_by()
    )
    found = {row["key"]: row["n"] for row in counted}
    return {key[6:]: found.get(key, 0) for key in windows}


def _window(rate: Rate) -> timedelta:
    return rate_window(rate)


def limits_text(report: QueueReport) -> str:
    """The limits in force in words: "2 at once, 10/m"; "none"."""
    parts = []
    if report.concurrency_limit is not None:
        parts.append(f"{report.concurrency_limit} at once")
    if report.rate_limit is not None:
        parts.append(report.rate_limit)
    return ", ".join(parts) or "none"


def in_use_text(report: QueueReport) -> str:
    """The slots in use in words: "2 of 2 in use", "7 of 10/m started"; "" without limits."""
    parts = []
    if report.concurrency_limit is not None:
        parts.append(f"{report.in_use} of {report.concurrency_limit} in use")
    if report.rate_limit is not None:
        parts.append(f"{report.started_in_window} of {report.rate_limit} started")
    return ", ".join(parts)


def source_text(report: QueueReport) -> str:
    """Where the limits in force come from: "settings", "set at run time", or ""."""
    if report.set_at_run_time:
        return "set at run time"
    return "settings" if report.limited else ""


__all__ = [
    "HeldKey",
    "QueueReport",
    "in_use_text",
    "key_label",
    "limits_text",
    "queue_reports",
    "short_key_label",
    "source_text",
    "why_held",
]
