"""The reads and writes flow control makes, in the caller's transaction: locking the keys'
rows, counting what is in use, holding runs back and letting them go.

Runs held back stay READY: not due, out of the claim's index and, through ``held_by``, out
of the stager's too (``HeldIndex`` keeps them in the order a freed slot lets them go). What
is in use is counted from the runs (RUNNING, with the key) and from the starts recorded,
never kept as a counter, so nothing a crash interrupts can leave a slot taken for good.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, Min, OuterRef, Q

from ..db import get_engine
from ..db.lookups import values_in
from ..db.records import ClaimedRun
from ..models import Limit, LimitStart, Queue, Run, RunStatus
from ..models.indexes import CLAIM_ORDER

# Rows changed per statement when a key's whole backlog is held back or let go.
CHUNK = 2000
LIMIT_COLUMNS = ("concurrency_limit", "rate_count", "rate_seconds")
# A run's place in the claim's order (CLAIM_ORDER): priority, available_at, id.
Place = tuple[int, datetime, int]
# Held back per pass at most: a larger backlog goes on the next pass (each pass is one key's).
MOST_HELD_PER_PASS = 20_000


def _locked(model: type[Limit] | type[Queue], database: str, field: str, keys: list[str]) -> dict:
    """Lock the rows of ``keys`` that exist, in key order, in one statement; return them."""
    rows = (
        model.objects.using(database)
        .select_for_update()
        .filter(values_in(field, keys))
        .order_by(field)
    )
    return {getattr(row, field): row for row in rows}


def _lock_or_create(
    model: type[Limit] | type[Queue], database: str, field: str, rows: dict[str, dict[str, Any]]
) -> dict:
    """Lock the rows of ``rows``' keys, making the missing ones with the values given.

    The keys a pass meets exist nearly always: one locking read, and an upsert only for the
    missing ones (an upsert of every key wrote every row again, each pass). Existing rows
    are locked first, then the new ones, each in key order: no two passes wait for each
    other in a cycle."""
    keys = sorted(rows)
    locked = _locked(model, database, field, keys)
    missing = [key for key in keys if key not in locked]
    if missing:
        get_engine(database).lock_or_create(
            model._meta.db_table, field, [{field: key, **rows[key]} for key in missing]
        )
        locked.update(_locked(model, database, field, missing))
    return locked


def lock_limits(database: str, wanted: dict[str, dict[str, Any]]) -> dict[str, Limit]:
    """Lock the ``Limit`` rows of ``wanted`` (key -> the limits the code declares, or {}
    where the caller does not know them), making the missing ones; return them.

    Every path that takes or frees a key's slot locks its row first, so two workers never
    both count a slot free, and a slot freed while a gate holds runs back is seen by it.
    """
    locked = _lock_or_create(
        Limit,
        database,
        "key",
        {key: {name: wanted[key].get(name) for name in LIMIT_COLUMNS} for key in wanted},
    )
    for key, declared in wanted.items():
        row = locked[key]
        changed = [name for name, value in declared.items() if getattr(row, name) != value]
        if changed:  # the code's limits changed (a deploy): the row follows
            for name in changed:
                setattr(row, name, declared[name])
            row.save(using=database, update_fields=changed)
    return locked


def lock_queues(database: str, names: Iterable[str]) -> dict[str, Queue]:
    """Lock the ``Queue`` rows of ``names``, making the missing ones."""
    return _lock_or_create(
        Queue, database, "name", {name: {"paused": False, "at_limit": False} for name in names}
    )


def running(database: str, column: str, values: Iterable[str], leaving: Sequence[int]) -> Counter:
    """RUNNING runs per value of ``column`` (a concurrency key, a queue), those of
    ``leaving`` (the claim being gated) left out. RUNNING runs are few: the index of them
    (RunningIndex) is read whole at worst."""
    query = (
        Run.objects.using(database)
        .filter(values_in(column, values), status=RunStatus.RUNNING)
        .exclude(values_in("pk", leaving))
        .values(column)
        .annotate(n=Count("pk"))
        .order_by()
    )
    return Counter({row[column]: row["n"] for row in query})


def starts_since(
    database: str, key: str, since: datetime, stale_before: datetime
) -> tuple[int, int, datetime | None]:
    """What a rate limit counts under ``key``: the starts begun after ``since``, the starts
    let go and not begun yet whose run still waits to begin (RUNNING: claimed, however long
    it waits in a worker's backlog; one given back or rescued meanwhile is no start), and
    the oldest begun start counted. ``stale_before`` is kept for the signature's callers."""
    waiting = Exists(
        Run.objects.using(database).filter(pk=OuterRef("run_id"), status=RunStatus.RUNNING)
    )
    found = (
        LimitStart.objects.using(database)
        .filter(Q(begun=True, started_at__gt=since) | Q(waiting, begun=False), key=key)
        .aggregate(
            n_begun=Count("pk", filter=Q(begun=True)),
            n_pending=Count("pk", filter=Q(begun=False)),
            oldest=Min("started_at", filter=Q(begun=True)),
        )
    )
    return found["n_begun"], found["n_pending"], found["oldest"]


def record_starts(
    database: str,
    key: str,
    run_ids: Sequence[int],
    now: datetime,
    forget_before: datetime,
    stale_before: datetime,
) -> None:
    """Forget the starts no window counts any more (and those let go whose run, older than
    ``stale_before``, no longer waits to begin); record those of ``run_ids``, let go now,
    as not begun.

    A run let go again has one start not begun, this one: an earlier one (an attempt lost
    before its body began, the run rescued) is forgotten in the same statement. Left, it
    counted twice while the run waited, and its lost worker, thawed, could mark it begun
    (starts.begin refuses that now): the long SQLite soak saw 21 starts in a 20/5s window."""
    starts = LimitStart.objects.using(database)
    waiting = Exists(
        Run.objects.using(database).filter(pk=OuterRef("run_id"), status=RunStatus.RUNNING)
    )
    gone = Q(begun=False, started_at__lte=stale_before) & ~Q(waiting)
    again = Q(values_in("run_id", run_ids), begun=False)
    starts.filter(Q(begun=True, started_at__lte=forget_before) | gone | again, key=key).delete()
    if run_ids:
        starts.bulk_create(
            [LimitStart(key=key, started_at=now, run_id=pk, begun=False) for pk in run_ids]
        )


def forget_unbegun(database: str, run_ids: Sequence[int]) -> None:
    """Runs given back before their body began: their starts are not starts."""
    if run_ids:
        LimitStart.objects.using(database).filter(
            values_in("run_id", run_ids), begun=False
        ).delete()


def give_back(database: str, runs: Sequence[ClaimedRun], held_by: str | None) -> None:
    """Undo the claim of ``runs``: READY again with the attempt they had, no error written.
    ``held_by`` set: held back until that key's slot frees; None: due at once (a full
    queue, which claims pass over until it has a slot)."""
    groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for run in runs:
        groups.setdefault((run.attempt, tuple(run.worker_ids[:-1])), []).append(run.id)
    for (attempt, worker_ids), ids in groups.items():
        values: dict[str, object] = {
            "status": RunStatus.READY,
            "due": held_by is None,
            "held_by": held_by,
            "attempt": attempt - 1,
            "worker_ids": list(worker_ids),
            "worker_id": "",
            "lease_expires_at": None,
            "prefetched": False,
        }
        if attempt == 1:
            values.update(started_at=None, last_attempted_at=None)
        Run.objects.using(database).filter(
            values_in("pk", ids), attempt=attempt, status=RunStatus.RUNNING
        ).update(**values)


def hold_due(
    database: str, column: str, value: str, held_by: str, *, queue: str | None = None, keep: int = 0
) -> int:
    """Hold back the due runs whose ``column`` is ``value`` (but the ``keep`` first in claim
    order), passing over rows other transactions lock (a claim about to gate them);
    return how many. A full key's backlog then waits out of the claim's way."""
    due = Run.objects.using(database).filter(status=RunStatus.READY, due=True, **{column: value})
    if queue is not None:
        due = due.filter(queue_name=queue)
    locked = get_engine(database).lock_skipping_locked(due.order_by(*CLAIM_ORDER))
    ids = list(locked.values_list("pk", flat=True)[keep : keep + MOST_HELD_PER_PASS])
    for start in range(0, len(ids), CHUNK):
        Run.objects.using(database).filter(values_in("pk", ids[start : start + CHUNK])).update(
            due=False, held_by=held_by
        )
    return len(ids)


def let_go(
    database: str,
    held_by: str,
    count: int,
    *,
    now: datetime | None = None,
    passing_over: Sequence[str] = (),
) -> tuple[set[str], bool]:
    """Make up to ``count`` of the runs ``held_by`` holds back due again, the best first,
    those of the queues ``passing_over`` left held; return their queues (to wake) and
    whether held runs were passed over because another transaction locked them (one cut
    off mid-way holds its locks until the server notices): the caller looks again soon,
    not at the backstop. ``now`` given: they go to the back of the line (a fair share's
    turn), else they keep their place."""
    if count <= 0:
        return set(), False
    held = Run.objects.using(database).filter(status=RunStatus.READY, held_by=held_by)
    if passing_over:
        held = held.exclude(queue_name__in=list(passing_over))
    locked = get_engine(database).lock_skipping_locked(
        held.order_by("-priority", "available_at", "id")
    )
    rows = list(locked.values_list("pk", "queue_name")[:count])
    values: dict[str, object] = {"due": True, "held_by": None}
    if now is not None:
        values["available_at"] = now
    ids = [pk for pk, _ in rows]
    for start in range(0, len(ids), CHUNK):
        Run.objects.using(database).filter(values_in("pk", ids[start : start + CHUNK])).update(
            **values
        )
    # Fewer than asked while some are still held: those were locked, not missing.
    skipped = len(rows) < count and held.exists()
    return {queue for _, queue in rows}, skipped


def due_with(
    database: str,
    column: str,
    value: str,
    *,
    up_to: int,
    passing_over: Sequence[str] = (),
    ahead_of: Place | None = None,
) -> int:
    """Due runs whose ``column`` is ``value`` (but those of the queues ``passing_over``; with
    ``ahead_of``, only those before that place in the claim's order), counted up to
    ``up_to``."""
    due = Run.objects.using(database).filter(status=RunStatus.READY, due=True, **{column: value})
    if passing_over:
        due = due.exclude(queue_name__in=list(passing_over))
    if ahead_of is not None:
        priority, available_at, pk = ahead_of
        due = due.filter(
            Q(priority__gt=priority)
            | Q(priority=priority, available_at__lt=available_at)
            | Q(priority=priority, available_at=available_at, pk__lt=pk)
        )
    return len(due.values_list("pk", flat=True)[:up_to])


def best_held(database: str, held_by: str, *, passing_over: Sequence[str] = ()) -> Place | None:
    """The place in the claim's order of the best run ``held_by`` holds back (but those of
    the queues ``passing_over``); None when it holds none."""
    held = Run.objects.using(database).filter(status=RunStatus.READY, held_by=held_by)
    if passing_over:
        held = held.exclude(queue_name__in=list(passing_over))
    return held.order_by(*CLAIM_ORDER).values_list("priority", "available_at", "pk").first()


def paused_queues(database: str) -> list[str]:
    """The queues an operator paused: claims pass them over for as long as they stay so."""
    return list(Queue.objects.using(database).filter(paused=True).values_list("name", flat=True))


def holds_any(database: str, held_by: str) -> bool:
    return Run.objects.using(database).filter(status=RunStatus.READY, held_by=held_by).exists()


def visible(database: str, queue: str, fair_key: str) -> int:
    """Due runs of a fair key in its queue: the ones claims can see now."""
    return (
        Run.objects.using(database)
        .filter(status=RunStatus.READY, due=True, fair_key=fair_key, queue_name=queue)
        .count()
    )
