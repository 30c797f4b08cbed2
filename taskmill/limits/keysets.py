"""Holding back and letting go for many keys of a kind at once, in the caller's transaction.

A claimed batch or a batch of outcomes meets many keys (a limit per account: one key per
run). Asking the database key by key made the gate cost a dozen statements per run, and
the drain of runs limited per key fell to a few percent of the unlimited one (bench
``--only limits``). These functions take every key of a pass in one statement each, so a
pass costs the same few statements whether it meets one key or hundreds.

Keys are "<kind>:<value>" (``concurrency:``, ``rate:``): the run's column ``<kind>_key``
holds the value, and ``held_by`` the whole key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from django.db.models import Count, F, QuerySet, Value, Window
from django.db.models.functions import Concat, RowNumber

from ..db import get_engine
from ..db.lookups import values_in
from ..models import Limit, Queue, Run, RunStatus
from ..models.indexes import CLAIM_ORDER
from .slots import CHUNK, MOST_HELD_PER_PASS


def split(key: str) -> tuple[str, str]:
    """(the run's column, its value) of a key."""
    kind, _, value = key.partition(":")
    return f"{kind}_key", value


def by_column(keys: Iterable[str]) -> dict[str, list[str]]:
    """The keys' values per run column."""
    found: dict[str, list[str]] = {}
    for key in keys:
        column, value = split(key)
        found.setdefault(column, []).append(value)
    return found


def hold_due(database: str, keys: Iterable[str]) -> Counter:
    """Hold back every due run of ``keys`` (full keys), passing over rows other
    transactions lock (a claim about to gate them, which waits for the keys' locks and
    holds them itself); return how many per key. At most MOST_HELD_PER_PASS: the rest on
    a later pass."""
    held: Counter = Counter()
    for column, values in by_column(keys).items():
        prefix = column.removesuffix("_key") + ":"
        due = Run.objects.using(database).filter(
            values_in(column, values), status=RunStatus.READY, due=True
        )
        locked = get_engine(database).lock_skipping_locked(due.order_by("id"))
        rows = list(locked.values_list("pk", column)[: MOST_HELD_PER_PASS - held.total()])
        ids = [pk for pk, _ in rows]
        for start in range(0, len(ids), CHUNK):
            Run.objects.using(database).filter(values_in("pk", ids[start : start + CHUNK])).update(
                due=False, held_by=Concat(Value(prefix), F(column))
            )
        held.update(prefix + value for _, value in rows)
    return held


def held_by_queue(database: str, keys: Sequence[str]) -> Counter:
    """Runs each of ``keys`` holds back, per queue: {(key, queue): count}."""
    if not keys:
        return Counter()
    held = Run.objects.using(database).filter(values_in("held_by", keys), status=RunStatus.READY)
    rows = (
        held.values("held_by", "queue_name")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("held_by", "queue_name", "n")
    )
    return Counter({(key, queue): n for key, queue, n in rows})


def held_counts(database: str, keys: Sequence[str], passing_over: Sequence[str]) -> Counter:
    """Runs each of ``keys`` holds back (those of the queues ``passing_over`` left out)."""
    if not keys:
        return Counter()
    held = Run.objects.using(database).filter(values_in("held_by", keys), status=RunStatus.READY)
    if passing_over:
        held = held.exclude(queue_name__in=list(passing_over))
    rows = held.values("held_by").annotate(n=Count("pk")).order_by().values_list("held_by", "n")
    return Counter(dict(rows))


def due_counts(database: str, keys: Sequence[str], passing_over: Sequence[str]) -> Counter:
    """Due runs of each of ``keys``, not claimed yet (let go earlier: they will take a slot)."""
    found: Counter = Counter()
    for column, values in by_column(keys).items():
        prefix = column.removesuffix("_key") + ":"
        due = Run.objects.using(database).filter(
            values_in(column, values), status=RunStatus.READY, due=True
        )
        if passing_over:
            due = due.exclude(queue_name__in=list(passing_over))
        rows = due.values(column).annotate(n=Count("pk")).order_by().values_list(column, "n")
        found.update({prefix + value: n for value, n in rows})
    return found


def let_go(
    database: str, wanted: Mapping[str, int], passing_over: Sequence[str]
) -> tuple[set[str], set[str], Counter]:
    """Make due again, per key, the ``wanted[key]`` best runs it holds back (claim order:
    priority, then the oldest), those of the queues ``passing_over`` left held. Returns
    the queues to wake, and the keys that let go fewer than wanted while still holding
    runs: those were locked by another transaction (one cut off mid-way keeps its locks
    until the server notices), and the caller looks at them again soon; and how many each
    key let go."""
    wanted = {key: n for key, n in wanted.items() if n > 0}
    if not wanted:
        return set(), set(), Counter()
    held = Run.objects.using(database).filter(values_in("held_by", wanted), status=RunStatus.READY)
    if passing_over:
        held = held.exclude(queue_name__in=list(passing_over))
    # The best of each key, by rank within it; no lock (a window can't be locked), so the
    # rows are locked below, and those another transaction changed meanwhile dropped.
    ranked = _ranked_by_key(held, max(wanted.values()))
    chosen = [
        pk
        for pk, key, rank in ranked.values_list("pk", "held_by", "rank")
        if rank <= wanted.get(key, 0)
    ]
    rows: list[tuple[int, str, str]] = []
    for start in range(0, len(chosen), CHUNK):
        locked = get_engine(database).lock_skipping_locked(
            held.filter(values_in("pk", chosen[start : start + CHUNK]))
        )
        rows += list(locked.values_list("pk", "held_by", "queue_name"))
    ids = [pk for pk, _, _ in rows]
    for start in range(0, len(ids), CHUNK):
        Run.objects.using(database).filter(values_in("pk", ids[start : start + CHUNK])).update(
            due=True, held_by=None
        )
    let = Counter(key for _, key, _ in rows)
    short = [key for key, n in wanted.items() if let[key] < n]
    skipped = set(held_counts(database, short, passing_over)) if short else set()
    return {queue for _, _, queue in rows}, skipped, let


def _ranked_by_key(held: QuerySet, up_to: int) -> QuerySet:
    """``held`` runs ranked within their key in the claim's order (CLAIM_ORDER), the first
    ``up_to`` of each key."""
    order = [F(name[1:]).desc() if name.startswith("-") else F(name).asc() for name in CLAIM_ORDER]
    ranked = held.annotate(rank=Window(RowNumber(), partition_by=[F("held_by")], order_by=order))
    return ranked.filter(rank__lte=up_to)


def best_held(database: str, keys: Sequence[str]) -> dict[str, tuple[int, datetime, int]]:
    """The best run each of ``keys`` holds back, as its place in the claim's order
    (``ClaimedRun.sort_key``), those of paused queues left out (a let-go passes them over)."""
    if not keys:
        return {}
    paused = Queue.objects.using(database).filter(paused=True).values("name")
    held = (
        Run.objects.using(database)
        .filter(values_in("held_by", keys), status=RunStatus.READY)
        .exclude(queue_name__in=paused)
    )
    rows = _ranked_by_key(held, 1).values_list("held_by", "priority", "available_at", "pk")
    return {key: (-priority, available_at, pk) for key, priority, available_at, pk in rows}


def save_release(rows: Iterable[Limit | Queue], database: str) -> None:
    """Save the rows' ``release_at`` (and a queue's ``at_limit``): one UPDATE per value
    among the keys, since a pass sets most of them to the same instant."""
    by_value: dict[datetime | None, list[str]] = {}
    for row in rows:
        if isinstance(row, Queue):
            row.save(using=database, update_fields=["release_at", "at_limit"])
        else:
            by_value.setdefault(row.release_at, []).append(row.key)
    for release_at, keys in by_value.items():
        Limit.objects.using(database).filter(values_in("key", keys)).update(release_at=release_at)


__all__ = [
    "best_held",
    "by_column",
    "due_counts",
    "held_by_queue",
    "held_counts",
    "hold_due",
    "let_go",
    "save_release",
    "split",
]
