"""Watching flow control while the soak runs: the limits' slots as the database holds them,
read a few times a second (issue 23).

The side-effect log says when bodies ran; only the database says when a slot was taken and
given back. Two things are kept from each reading:

- each RUNNING run under a limit (a concurrency key, a rate, a limited queue), by (run,
  attempt): the last time it was seen RUNNING, and its lease then. A lost attempt (its
  worker killed, or frozen past its lease) keeps its slot until its rescue, which comes
  after both: the checker ends such an attempt's body there, not at its log's end (a
  frozen body goes on after its rescue; a killed one has no end).
- the slots that look taken for no run, or free with runs held back anyway, with nothing
  due to take them (``blocked``). One reading can be torn (its statements are not one
  snapshot) or catch a transaction half way: the checker counts a leak only when the same
  one stays for longer than a lease (``flow.leaks``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import DatabaseError, connection
from django.db.models import Count, Q
from django.utils import timezone

SAMPLE_EVERY = 0.3


@dataclass
class FlowWatch:
    # (run id, attempt as the task sees it) -> (last seen RUNNING, its lease then), in
    # seconds since the epoch, like the side-effect log's times.
    seen: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    # (when, what looked blocked then): "lease:<run>:<attempt>" a slot held past its lease;
    # "held:<limit key>" runs held back by a key with room and nothing due; "queue:<name>"
    # a queue marked at its limit with room.
    samples: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    misses: int = 0  # readings the database did not answer (a restart, a cut)
    # Readings in which a kind of key ("concurrency", "rate", "fair") held runs back, and
    # the most it held at once: what shows the limits were met, not only set.
    holding: Counter = field(default_factory=Counter)
    most_held: Counter = field(default_factory=Counter)
    queue_full: int = 0  # readings in which a limited queue was at its limit
    # What the gate counted: every rate start it recorded (LimitStart id -> key, when), kept
    # past the gate's own pruning; and when each limited (run, attempt) was claimed, as first
    # seen (its start columns hold the claim's time until its body begins). A claim undone
    # (given back by the gate, rescued or returned unstarted) hands its attempt number to the
    # next one: seen RUNNING again after a reading without it, or under another worker, it
    # is a new claim.
    ledger: dict[int, tuple[str, float]] = field(default_factory=dict)
    claimed: dict[tuple[int, int], float] = field(default_factory=dict)

    def release_after(self, run_id: int, attempt: int) -> float | None:
        """The earliest the database can have given back this attempt's slot, if seen."""
        seen = self.seen.get((run_id, attempt))
        return max(seen) if seen else None


class Watcher:
    """Reads the database every ``every`` seconds into a ``FlowWatch`` until stopped."""

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self.watch = FlowWatch()
        # (run, attempt) -> its worker, in the last complete reading
        self._running: dict[tuple[int, int], str] = {}

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(self.every):
                try:
                    self.read()
                except DatabaseError:
                    self.watch.misses += 1
                    connection.close()
        finally:
            connection.close()

    def read(self) -> None:
        from taskmill.limits.queues import configured_limits
        from taskmill.models import LimitStart, Queue, Run, RunStatus

        now = timezone.now()
        at = now.timestamp()
        queue_limits = {
            name: limits.concurrency_limit
            for name, limits in configured_limits("default").items()
            if limits.concurrency_limit is not None
        }
        blocked: set[str] = set()
        running = Run.objects.filter(status=RunStatus.RUNNING).filter(
            Q(concurrency_key__isnull=False)
            | Q(rate_key__isnull=False)
            | Q(queue_name__in=list(queue_limits))
        )
        by_key: Counter = Counter()
        by_queue: Counter = Counter()
        running_now = {}
        for run_id, worker_ids, lease, key, queue, claimed, worker in running.values_list(
            "id", "worker_ids", "lease_expires_at", "concurrency_key", "queue_name",
            "last_attempted_at", "worker_id",
        ):  # fmt: skip
            attempt = len(worker_ids)
            lease_at = lease.timestamp() if lease is not None else 0.0
            self.watch.seen[(run_id, attempt)] = (at, lease_at)
            if claimed is not None and self._running.get((run_id, attempt)) != worker:
                self.watch.claimed[(run_id, attempt)] = claimed.timestamp()
            running_now[(run_id, attempt)] = worker
            holds_slot = key is not None or queue in queue_limits  # a rate holds none
            if holds_slot and lease_at < at:
                blocked.add(f"lease:{run_id}:{attempt}")
            by_key[key] += 1
            by_queue[queue] += 1
        for name, at_limit in Queue.objects.filter(name__in=list(queue_limits)).values_list(
            "name", "at_limit"
        ):
            self.watch.queue_full += at_limit
            if at_limit and by_queue[name] < queue_limits[name]:
                blocked.add(f"queue:{name}")
        blocked |= _held_with_room(self.watch, now, by_key)
        # A start counts once its body began (its time is then the body's): one let go and
        # never begun (its run given back, or rescued unstarted) was no start.
        begun = LimitStart.objects.filter(begun=True)
        for start_id, key, started_at in begun.values_list("id", "key", "started_at"):
            self.watch.ledger[start_id] = (key, started_at.timestamp())
        self.watch.samples.append((at, frozenset(blocked)))
        self._running = running_now


def _held_with_room(watch: FlowWatch, now, running_by_key: Counter) -> set[str]:
    """Keys that hold runs back with nothing of theirs due, though they have room: a
    concurrency key below its limit, a rate with starts to spare in its window, a fair key
    (which holds back only what exceeds its due runs)."""
    from taskmill.limits.gate import RATE_MARGIN, RATE_MARGIN_MOST
    from taskmill.models import Limit, LimitStart, Run, RunStatus

    ready = Run.objects.filter(status=RunStatus.READY)
    held = dict(
        ready.filter(held_by__isnull=False)
        .values("held_by")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("held_by", "n")
    )
    rows = {row.key: row for row in Limit.objects.filter(key__in=list(held))}
    kinds: Counter = Counter()
    for key, count in held.items():
        kinds[key.partition(":")[0]] += count
    for kind, count in kinds.items():
        watch.holding[kind] += 1
        watch.most_held[kind] = max(watch.most_held[kind], count)
    found = set()
    for key in held:
        kind, _, value = key.partition(":")
        due = ready.filter(due=True)
        if kind == "concurrency":
            row = rows.get(key)
            room = row is not None and running_by_key[value] < (row.concurrency_limit or 0)
            due = due.filter(concurrency_key=value)
        elif kind == "rate":
            row = rows.get(key)
            if row is None or not row.rate_count or not row.rate_seconds:
                continue
            per = timedelta(seconds=row.rate_seconds)
            window = per + min(per * RATE_MARGIN, RATE_MARGIN_MOST)
            starts = LimitStart.objects.filter(key=key, started_at__gt=now - window).count()
            room = starts < row.rate_count
            due = due.filter(rate_key=value)
        elif kind == "fair":
            queue, _, fair_key = value.partition(":")
            room = True
            due = due.filter(queue_name=queue, fair_key=fair_key)
        else:
            continue
        if room and not due.exists():
            found.add(f"held:{key}")
    return found


def watching(watcher: Watcher) -> tuple[threading.Thread, threading.Event]:
    """Start ``watcher`` on a thread of its own; set the event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), name="flow-watch", daemon=True)
    thread.start()
    return thread, stop


__all__ = ["SAMPLE_EVERY", "FlowWatch", "Watcher", "watching"]
