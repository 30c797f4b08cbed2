"""Pruning: delete finished runs past their time-to-live (or older than an age), the
per-minute rollups past their retention, and the rows of dead workers. A batch's members are
kept until the batch has finished, and the batch goes with the last of them.

One service for its two callers: the worker's pruner duty (taskmill.worker.duties.pruner),
a bounded pass every TASKMILL_PRUNE_INTERVAL seconds, and ``manage.py taskmill prune``
(taskmill.cli.prune), until nothing is left. What keeps it cheap and harmless next to the
hot path:

- One batch (``batch_size`` rows) per transaction, so no lock is held for long. The batch's
  ids are read through the ``expires_at`` (or ``finished_at``) index, with ``FOR UPDATE
  SKIP LOCKED`` where the database has it: pruners on several workers take different rows
  instead of queueing behind each other, and a row someone else holds (an enqueue naming it
  in ``depends_on``, a retry) is left for a later pass. SQLite has one writer at a time, so
  a plain select is already consistent there.
- Only finished runs are ever deleted: every statement repeats the status condition.

Deleting a run never lets a schedule fire again: a schedule's own ``next_fire_at`` decides
what fires (taskmill.scheduler.firing), not the runs it left behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from .conf import setting
from .db import get_engine
from .db.stats import fold_hours
from .models import (
    FINISHED_STATUSES,
    Batch,
    Limit,
    Run,
    RunStats,
    RunStatsHourly,
    RunStatus,
    Worker,
)
from .result_ttl import seconds_for, setting_ttl

# A worker row without a heartbeat for this long belongs to a dead process (the heartbeat
# re-registers a live worker whose row was pruned, so a mistake here costs nothing).
DEAD_WORKER_AFTER = timedelta(days=1)

Progress = Callable[[int], None]
# Empty finished batches deleted per pass (prune_empty_batches): a small table's leftovers.
EMPTY_BATCHES_PER_PASS = 1000
# Hourly rollup rows folded into the totals per pass (prune_stats): a day of 40 busy
# tasks' hours is about a thousand.
HOURS_PER_PASS = 5000
# Rows of limits' keys that hold nothing back, deleted per pass (prune_limit_keys).
LIMIT_KEYS_PER_PASS = 1000


def prunable_runs(
    database: str,
    *,
    expired_before: datetime | None = None,
    finished_before: datetime | None = None,
    statuses: Iterable[str] | None = None,
) -> QuerySet[Run]:
    """The finished runs that expired at or before ``expired_before`` and/or finished before
    ``finished_before``, oldest first, optionally only those in ``statuses``."""
    wanted = list(FINISHED_STATUSES if statuses is None else dict.fromkeys(statuses))
    active = [status for status in wanted if status not in FINISHED_STATUSES]
    if active or not wanted:
        # A guard for callers of this function; the command validates its own input.
        raise ValueError(f"Only finished runs can be pruned, not {active or 'no status'}.")
    if expired_before is None and finished_before is None:
        raise ValueError("Give expired_before or finished_before: which runs are old enough?")
    # A member of a batch that has not finished is kept: the batch's seal and its repair
    # (batches/sweep.py) count its members. A subquery, not a join: a join would put the
    # batch table under the pick's FOR UPDATE (and PostgreSQL refuses it on an outer join).
    unfinished = Batch.objects.using(database).filter(finished_at__isnull=True).values("pk")
    query = Run.objects.using(database).filter(status__in=wanted).exclude(batch__in=unfinished)
    if expired_before is not None:
        query = query.filter(expires_at__lte=expired_before).order_by("expires_at")
    if finished_before is not None:
        query = query.filter(finished_at__lt=finished_before).order_by("finished_at")
    return query


def prune_runs(
    database: str,
    *,
    expired_before: datetime | None = None,
    finished_before: datetime | None = None,
    statuses: Iterable[str] | None = None,
    batch_size: int,
    dry_run: bool = False,
    progress: Progress | None = None,
    max_batches: int | None = None,
) -> int:
    """Delete the runs ``prunable_runs`` selects, ``batch_size`` per transaction, at most
    ``max_batches`` batches (None: until none is left). Returns how many were deleted, or
    with ``dry_run`` how many would be. ``progress`` is called with the running total."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    query = prunable_runs(
        database,
        expired_before=expired_before,
        finished_before=finished_before,
        statuses=statuses,
    )
    if dry_run:
        count = query.count()
        if progress is not None:
            progress(count)
        return count
    deleted = 0
    batches = itertools.count() if max_batches is None else range(max_batches)
    for _ in batches:
        picked, removed = _delete_batch(database, query, batch_size)
        deleted += removed
        if progress is not None and removed:
            progress(deleted)
        # A short batch means nothing is left, or the rest is held by other pruners.
        if picked < batch_size:
            break
    return deleted


def _delete_batch(database: str, query: QuerySet[Run], batch_size: int) -> tuple[int, int]:
    """One transaction: pick up to ``batch_size`` ids, delete them with their dependency
    rows. Returns (ids picked, runs deleted)."""
    with transaction.atomic(using=database):
        pick = get_engine(database).lock_skipping_locked(query)
        picked = list(pick.values_list("pk", "batch_id")[:batch_size])
        if not picked:
            return 0, 0
        ids = [pk for pk, _batch in picked]
        # The ORM's cascade removes the RunDependency rows on either side (and whatever
        # else comes to reference runs) on every database; only("pk") keeps it from loading
        # arguments and results. The filter repeats the status and age conditions: whatever
        # happened since the pick, only runs that are finished and old enough go.
        _, per_model = query.filter(pk__in=ids).only("pk").delete()
        _delete_emptied_batches(database, {batch for _pk, batch in picked if batch is not None})
    return len(ids), per_model.get(Run._meta.label, 0)


def _delete_emptied_batches(database: str, batch_ids: set[int]) -> None:
    """A finished batch goes with the last of its members: it is pruned with their
    time-to-live (only the batches of the runs just deleted are looked at)."""
    if not batch_ids:
        return
    members = Run.objects.using(database).filter(batch_id=OuterRef("pk"))
    emptied = Batch.objects.using(database).filter(
        pk__in=sorted(batch_ids), finished_at__isnull=False
    )
    emptied.exclude(Exists(members)).delete()


def prune_empty_batches(database: str, now: datetime) -> int:
    """Delete the finished batches that have no member left, once they are as old as
    TASKMILL_RESULT_TTL keeps a successful run (never when it keeps runs for ever). Batches
    go with their last member (``_delete_emptied_batches``): these are those that had none
    (a block that enqueued nothing) or whose members were deleted by other means."""
    keep = seconds_for(setting_ttl(setting("TASKMILL_RESULT_TTL")), RunStatus.SUCCESSFUL)
    if keep is None:
        return 0
    members = Run.objects.using(database).filter(batch_id=OuterRef("pk"))
    old = Batch.objects.using(database).filter(finished_at__lt=now - timedelta(seconds=keep))
    ids = list(old.exclude(Exists(members)).values_list("pk", flat=True)[:EMPTY_BATCHES_PER_PASS])
    if not ids:
        return 0
    deleted, _ = Batch.objects.using(database).filter(pk__in=ids).delete()
    return deleted


def prune_limit_keys(database: str) -> int:
    """Delete the rows of limits' keys that hold nothing back: one per key ever used (an
    account, a tenant) would otherwise pile up for ever. Such a row carries only what the
    task's code declares and when to look again (unset while nothing is held), so the gate
    writes it anew when the key is next used; what is in use is counted from the runs. The
    delete repeats the condition: a key that held runs back meanwhile stays."""
    held = Run.objects.using(database).filter(
        status=RunStatus.READY, held_by__isnull=False, held_by=OuterRef("key")
    )
    idle = Limit.objects.using(database).filter(release_at__isnull=True).exclude(Exists(held))
    keys = list(idle.values_list("key", flat=True)[:LIMIT_KEYS_PER_PASS])
    if not keys:
        return 0
    deleted, _ = idle.filter(key__in=keys).delete()
    return deleted


def prune_stats(database: str, now: datetime) -> int:
    """Delete the rollups older than TASKMILL_STATS_RETENTION (the dashboard's longest chart
    is a week). The hours deleted are first added to the totals (``RunStatsTotal``), in the
    same transaction: the metrics' counters, totals plus kept hours, never go down."""
    keep = timedelta(seconds=float(setting("TASKMILL_STATS_RETENTION")))
    minutes, _ = RunStats.objects.using(database).filter(minute__lt=now - keep).delete()
    hours = 0
    with transaction.atomic(using=database):
        old = RunStatsHourly.objects.using(database).filter(hour__lt=now - keep)
        # Locked, skipping what another pruner holds: each hour is added to the totals once.
        rows = list(get_engine(database).lock_skipping_locked(old)[:HOURS_PER_PASS])
        if rows:
            get_engine(database).add_totals(fold_hours(rows))
            hours, _ = (
                RunStatsHourly.objects.using(database)
                .filter(pk__in=[row.pk for row in rows])
                .delete()
            )
    return minutes + hours


def prune_workers(database: str, now: datetime) -> int:
    """Delete the rows of workers that stopped, or whose heartbeat is a day old."""
    dead = Q(state=Worker.State.STOPPED) | Q(last_heartbeat_at__lt=now - DEAD_WORKER_AFTER)
    deleted, _ = Worker.objects.using(database).filter(dead).delete()
    return deleted
