"""The gate: in the claim's transaction, which claimed runs may start under their limits.

A claim takes the best due runs as it always does (one statement); when some carry a
limit's key (or sit in a limited queue), the gate then locks those keys' rows, counts what
is in use, and keeps the runs that fit. The others go back at once, using no attempt and
writing no error: held back (out of the claim's index) until their key's slot frees, or,
for a full queue, handed back while claims pass the queue over. A full key that turns a
claimed run away has its whole due backlog held back in the same pass, so claims never
meet it again batch after batch. A key that only fills up holds nothing back: its other
runs may be far down the claim's order, and a slot freed before a claim meets them costs
no hold and no let-go (a limit per account, accounts in turn: most keys). A slot freed
lets go exactly as many runs as it made room for, in the transaction that freed it
(``settle_slots``, from ``followups.settle``), and wakes workers.

Keys are locked in one statement, in order (``Engine.lock_or_create``), and every path
that takes or frees a slot locks first: no two workers both count a slot free, and no
freed slot goes unseen. A key with runs still held back is looked at again at its
``release_at``: when its rate's window moves on, or after BACKSTOP, should a slot have been
freed by a path that could not say so (a run deleted by hand).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from .. import registry
from ..conf import setting
from ..db.records import ClaimedRun
from ..models import Limit, Queue
from ..wakeup import wake_after_commit
from . import keysets, slots
from .keys import declared_limits
from .queues import configured_limits, limited, row_limits
from .rates import Rate

BACKSTOP = timedelta(seconds=30)
# A start is counted from its claim, and its body begins a little later (a thread to free,
# a busy machine): a rate's window is counted this much longer (of its length, at most
# RATE_MARGIN_MOST), so that a run claimed at the end of one window and begun late does not
# crowd the next. The rate is still used to 95%.
RATE_MARGIN = 0.05
RATE_MARGIN_MOST = timedelta(seconds=1)
# A full rate with starts let go and not begun looks again this soon: they begin (or are
# given back) and the window's true oldest start is known.
PENDING_LOOK = timedelta(seconds=0.2)
# Held runs a slot had room for but another transaction locked: look again this soon.
SKIPPED_LOOK = timedelta(seconds=1)
# Due runs of one fair key at once: claims take them in turn with other keys' (a key's
# backlog waits held back and comes forward as its due runs are claimed).
FAIR_WINDOW = 8
# The releaser's pace (worker/duties/releaser.py): it looks at least this often, and when a
# key is due sooner, then (a rate's window moving on), but not more often than MIN_LOOK.
LOOK_EVERY = 1.0
MIN_LOOK = 0.02
LOOK_AT_MOST = 200


def rate_window(rate: Rate) -> timedelta:
    """How far back a rate's starts are counted: its length and the margin."""
    return rate.per + min(rate.per * RATE_MARGIN, RATE_MARGIN_MOST)


@dataclass(slots=True)
class Gauge:
    """One key's slots in this pass: its limits, what is in use, what the pass took."""

    key: str
    row: Limit | Queue
    concurrency: int | None = None
    rate: Rate | None = None
    in_use: int = 0
    starts: int = 0  # a rate's starts in its window, those not begun yet included
    pending: int = 0  # of which not begun yet
    oldest_start: datetime | None = None  # the oldest begun start in the window
    taken: int = 0
    admitted: list[int] = field(default_factory=list)  # the run ids the pass let start
    turned_away: int = 0  # claimed runs of the pass it held back

    @property
    def window(self) -> timedelta:
        assert self.rate is not None
        return rate_window(self.rate)

    @property
    def free(self) -> float:
        free = math.inf
        if self.concurrency is not None:
            free = self.concurrency - self.in_use - self.taken
        if self.rate is not None:
            free = min(free, self.rate.count - self.starts - self.taken)
        return free

    def look_again(self, now: datetime, holding: bool, skipped: bool = False) -> bool:
        """Set when to look at the key again, with no run of it ending: while it holds
        runs back (or is full), when its rate's oldest start leaves the window, else at
        the backstop (kept if already set), and soon when runs it had room for were
        ``skipped`` (locked by another transaction); return whether it changed."""
        before = self.row.release_at
        if not holding:
            after = None
        elif self.rate is not None and self.rate.count - self.starts - self.taken <= 0:
            # A start not begun yet frees nothing until it begins: look again soon.
            after = (self.oldest_start or now) + self.window
            if self.pending or self.oldest_start is None:
                after = min(after, now + PENDING_LOOK)
            after = max(after, now)
        elif before is not None and before > now:
            after = before
        else:
            after = now + BACKSTOP
        if holding and skipped:
            after = min(after, now + SKIPPED_LOOK)
        self.row.release_at = after
        return after != before


@dataclass(slots=True)
class Pass:
    """What a gate pass locks: the keys of the runs claimed and of the slots freed."""

    database: str
    declared: dict[str, dict[str, object]] = field(default_factory=dict)  # Limit keys
    queues: set[str] = field(default_factory=set)
    fair: set[tuple[str, str]] = field(default_factory=set)  # (queue, fair key)

    def add_run(self, run: ClaimedRun, limited_queues: frozenset[str]) -> None:
        if run.concurrency_key is not None or run.rate_key is not None:
            task = registry.resolve_or_none(run.task_path)
            if run.concurrency_key is not None:
                key = f"concurrency:{run.concurrency_key}"
                self.declared[key] = declared_limits(task, "concurrency")
            if run.rate_key is not None:
                self.declared[f"rate:{run.rate_key}"] = declared_limits(task, "rate")
        if run.fair_key is not None:
            self.declared.setdefault(f"fair:{run.queue_name}:{run.fair_key}", {})
            self.fair.add((run.queue_name, run.fair_key))
        if run.queue_name in limited_queues:
            self.queues.add(run.queue_name)

    def add_key(self, key: str, limited_queues: frozenset[str]) -> None:
        if key.startswith("queue:"):
            if key[6:] in limited_queues:
                self.queues.add(key[6:])
            return
        self.declared.setdefault(key, {})
        if key.startswith("fair:"):
            queue, _, fair_key = key[5:].partition(":")
            self.fair.add((queue, fair_key))

    @property
    def empty(self) -> bool:
        return not (self.declared or self.queues)


def freed_keys(queue_name: str, concurrency_key: str | None) -> list[str]:
    """The keys whose slot a run leaving RUNNING frees."""
    keys = [f"queue:{queue_name}"]
    if concurrency_key is not None:
        keys.append(f"concurrency:{concurrency_key}")
    return keys


def touches(runs: Sequence[ClaimedRun], database: str) -> bool:
    """Whether any of ``runs`` has a limit to pass (a key, or a limited queue)."""
    limited_queues = limited.queues(database)
    return any(
        run.concurrency_key is not None
        or run.rate_key is not None
        or run.fair_key is not None
        or run.queue_name in limited_queues
        for run in runs
    )


def holds_slot(run: ClaimedRun, database: str) -> bool:
    """Whether ``run`` holds a concurrency slot, which its end frees (a key's, a limited
    queue's). From what the process last learnt of the queues: any thread may ask."""
    return run.concurrency_key is not None or run.queue_name in limited.known(database)


def free_slots(database: str, runs: Sequence[ClaimedRun | Given]) -> None:
    """After ``runs`` were given back outside any outcome (a worker stopping, the runs of a
    claim in doubt): let their limits' slots go, in a transaction of its own."""
    freed = {key for run in runs for key in freed_keys(run.queue_name, run.concurrency_key)}
    limited_queues = limited.queues(database)
    if any(not key.startswith("queue:") or key[6:] in limited_queues for key in freed) or touches(
        runs, database
    ):
        with transaction.atomic(using=database):
            slots.forget_unbegun(database, [run.id for run in runs])
            settle_slots(database, (), sorted(freed))


@dataclass(frozen=True, slots=True)
class Given:
    """A run given back, as ``free_slots`` needs it."""

    id: int
    queue_name: str
    concurrency_key: str | None
    rate_key: str | None = None
    fair_key: str | None = None


def settle_slots(
    database: str,
    claimed: Sequence[ClaimedRun] = (),
    freed: Iterable[str] = (),
    now: datetime | None = None,
    *,
    also_queues: Iterable[str] = (),
) -> list[ClaimedRun]:
    """Gate ``claimed`` and let go what the slots of ``freed`` keys made room for, in one
    pass over their locked rows, in the caller's transaction; return the runs that may
    start (all of ``claimed`` when none is limited). ``also_queues``: queues to settle
    even where this process does not know them limited (their limits just changed)."""
    limited_queues = limited.queues(database) | frozenset(also_queues)
    if not limited_queues and _unlimited(claimed, freed):
        return list(claimed)  # the common case, every batch of every worker: nothing to do
    work = Pass(database)
    for run in claimed:
        work.add_run(run, limited_queues)
    for key in freed:
        work.add_key(key, limited_queues)
    if work.empty:
        return list(claimed)
    now = now or timezone.now()
    gauges = _measure(work, claimed, now)
    admitted = _admit(database, claimed, gauges, _first_held(database, claimed, gauges))
    wake = _settle_keys(database, gauges, now)
    wake |= _share_fairly(database, work, gauges, now)
    for queue in sorted(wake):
        wake_after_commit(database, queue)
    return admitted


def _unlimited(claimed: Sequence[ClaimedRun], freed: Iterable[str]) -> bool:
    """No key among ``claimed`` and ``freed`` but queues' (of no limited queue, then)."""
    return all(key.startswith("queue:") for key in freed) and not any(
        run.concurrency_key is not None or run.rate_key is not None or run.fair_key is not None
        for run in claimed
    )


def _measure(work: Pass, claimed: Sequence[ClaimedRun], now: datetime) -> dict[str, Gauge]:
    database = work.database
    limits = slots.lock_limits(database, work.declared) if work.declared else {}
    queue_rows = slots.lock_queues(database, work.queues) if work.queues else {}
    gauges: dict[str, Gauge] = {}
    for key, row in limits.items():
        if key.startswith("fair:"):
            gauges[key] = Gauge(key, row)
            continue
        rate = None
        if row.rate_count and row.rate_seconds:
            rate = Rate(row.rate_count, timedelta(seconds=row.rate_seconds))
        gauges[key] = Gauge(key, row, row.concurrency_limit, rate)
    configured = configured_limits(database) if queue_rows else {}
    for name, row in queue_rows.items():
        limits_now = row_limits(row, configured)
        gauges[f"queue:{name}"] = Gauge(
            f"queue:{name}", row, limits_now.concurrency_limit, limits_now.rate
        )
    leaving = [run.id for run in claimed]
    keys = [k[12:] for k, g in gauges.items() if k.startswith("concurrency:") and g.concurrency]
    for key, count in slots.running(database, "concurrency_key", keys, leaving).items():
        gauges[f"concurrency:{key}"].in_use = count
    names = [k[6:] for k, g in gauges.items() if k.startswith("queue:") and g.concurrency]
    for name, count in slots.running(database, "queue_name", names, leaving).items():
        gauges[f"queue:{name}"].in_use = count
    stale = now - timedelta(seconds=float(setting("TASKMILL_LEASE")))
    for gauge in gauges.values():
        if gauge.rate is not None:
            begun, gauge.pending, gauge.oldest_start = slots.starts_since(
                database, gauge.key, now - gauge.window, stale
            )
            gauge.starts = begun + gauge.pending
    return gauges


def _gates_of(run: ClaimedRun, gauges: dict[str, Gauge]) -> list[Gauge]:
    keys = []
    if run.concurrency_key is not None:
        keys.append(f"concurrency:{run.concurrency_key}")
    if run.rate_key is not None:
        keys.append(f"rate:{run.rate_key}")
    keys.append(f"queue:{run.queue_name}")  # last: a full queue hands back, not holds
    return [gauges[key] for key in keys if key in gauges]


def _first_held(
    database: str, claimed: Sequence[ClaimedRun], gauges: dict[str, Gauge]
) -> dict[str, tuple[int, datetime, int]]:
    """The best run held back by each task key of ``claimed``, in the claim's order."""
    keys = {g.key for run in claimed for g in _gates_of(run, gauges) if _may_hold(g)}
    return keysets.best_held(database, sorted(keys))


def _may_hold(gauge: Gauge) -> bool:
    """Whether a task key may hold runs back: a key's ``release_at`` is set exactly while
    it does (``Gauge.look_again``, at the end of every pass that holds or lets go), so a
    pass asks the database about the held runs of those keys alone: most keys hold none."""
    return not gauge.key.startswith("queue:") and (
        gauge.row.release_at is not None or gauge.turned_away > 0
    )


def _behind_held(run: ClaimedRun, gates: list[Gauge], first_held: dict) -> Gauge | None:
    """The gate of ``run`` whose key holds back a run ahead of it in the claim's order: a
    run enqueued after its key filled up, claimed in the pass that frees the key's slot
    (the outcome's claim comes first), must not take the held run's turn."""
    place = run.sort_key()
    for gate in gates:
        best = first_held.get(gate.key)
        if best is not None and place > best:
            return gate
    return None


def _admit(
    database: str,
    claimed: Sequence[ClaimedRun],
    gauges: dict[str, Gauge],
    first_held: dict[str, tuple[int, datetime, int]],
) -> list[ClaimedRun]:
    """Keep the claimed runs that fit, in claim order; give the others back."""
    admitted: list[ClaimedRun] = []
    held: dict[str | None, list[ClaimedRun]] = {}
    for run in claimed:
        gates = _gates_of(run, gauges)
        blocked = _behind_held(run, gates, first_held) or next(
            (gate for gate in gates if gate.free <= 0), None
        )
        if blocked is None:
            admitted.append(run)
            for gate in gates:
                gate.taken += 1
                gate.admitted.append(run.id)
                if gate.rate is not None:  # _settle_keys records its start, not begun
                    run.counts_start = True
        else:
            blocked.turned_away += 1
            held.setdefault(None if blocked.key.startswith("queue:") else blocked.key, []).append(
                run
            )
    for key, runs in held.items():
        slots.give_back(database, runs, key)
    return admitted


def _settle_keys(database: str, gauges: dict[str, Gauge], now: datetime) -> set[str]:
    """After the claim's share: record its starts, hold back the backlog of keys now full,
    let go what free slots make room for, and say when to look again."""
    wake: set[str] = set()
    changed: list[Limit | Queue] = []
    task_keys: list[Gauge] = []
    for gauge in gauges.values():
        if gauge.key.startswith("fair:"):
            continue
        if gauge.rate is not None:
            stale = now - timedelta(seconds=float(setting("TASKMILL_LEASE")))
            slots.record_starts(database, gauge.key, gauge.admitted, now, now - gauge.window, stale)
            gauge.starts += gauge.taken
            gauge.pending += gauge.taken
            gauge.taken = 0
        if isinstance(gauge.row, Queue):
            full = gauge.free <= 0
            switched = gauge.row.at_limit != full
            if gauge.row.at_limit and not full:
                wake.add(gauge.row.name)
            gauge.row.at_limit = full
            if gauge.look_again(now, full) or switched:
                changed.append(gauge.row)
        else:
            task_keys.append(gauge)
    if task_keys:
        woken, still, skipped = _settle_task_keys(database, task_keys)
        wake |= woken
        for gauge in task_keys:
            if gauge.look_again(now, gauge.key in still, gauge.key in skipped):
                changed.append(gauge.row)
    keysets.save_release(changed, database)
    return wake


def _settle_task_keys(
    database: str, gauges: Sequence[Gauge]
) -> tuple[set[str], set[str], set[str]]:
    """Hold back the due backlog of the keys now full, and let go what the others' free
    slots make room for, every key in the same few statements; return the queues to wake,
    the keys still holding runs back, and those whose runs were locked elsewhere
    (keysets.let_go)."""
    keys = [gauge.key for gauge in gauges]
    held = keysets.held_by_queue(database, [gauge.key for gauge in gauges if _may_hold(gauge)])
    before: Counter = Counter()
    for (key, _), count in held.items():
        before[key] += count
    # Full keys that turned a claimed run away, or hold some back already: their due
    # backlog is in the claims' way. One that just filled up is left be (module docstring).
    full = [
        gauge.key
        for gauge in gauges
        if gauge.free <= 0 and (gauge.turned_away or before[gauge.key])
    ]
    newly = keysets.hold_due(database, full) if full else Counter()
    roomy = {gauge.key: gauge for gauge in gauges if gauge.free > 0 and before[gauge.key]}
    wake: set[str] = set()
    skipped: set[str] = set()
    let: Counter = Counter()
    if roomy:
        wake, skipped, let = _let_go(database, roomy, held)
    still = {key for key in keys if before[key] + newly[key] - let[key] > 0}
    return wake, still, skipped


def _let_go(
    database: str, roomy: dict[str, Gauge], held: Counter
) -> tuple[set[str], set[str], Counter]:
    """Let go what the free slots of ``roomy`` keys make room for (held: their held runs
    per (key, queue))."""
    # A paused queue's runs are passed over, as claims pass them over: a slot let go to one
    # would wait for the queue's resume, and the key's runs of other queues with it.
    paused = slots.paused_queues(database)
    holds: Counter = Counter()
    for (key, queue), count in held.items():
        if key in roomy and queue not in paused:
            holds[key] += count
    if not holds:
        return set(), set(), Counter()
    due = keysets.due_counts(database, list(holds), paused)
    wanted: dict[str, int] = {}
    for key, count_held in holds.items():
        free = roomy[key].free
        count = slots.MOST_HELD_PER_PASS if math.isinf(free) else int(free)
        if due[key]:
            # Runs let go earlier and not claimed yet will take slots too: those ahead of
            # the best held run in the claim's order. Runs behind it (enqueued since the
            # key last filled up, not yet claimed) must not take its turn: the claim meets
            # both and gates them in order. Rare: a full key holds its due runs back.
            column, value = keysets.split(key)
            best = slots.best_held(database, key, passing_over=paused)
            if best is None:
                continue
            count -= slots.due_with(
                database, column, value, up_to=count, passing_over=paused, ahead_of=best
            )
        wanted[key] = min(count, count_held)
    return keysets.let_go(database, wanted, paused)


def _share_fairly(database: str, work: Pass, gauges: dict[str, Gauge], now: datetime) -> set[str]:
    """Keep FAIR_WINDOW due runs per fair key: the rest held back, brought forward to the
    back of the line as the key's runs are claimed, so keys take turns."""
    wake: set[str] = set()
    changed = []
    for queue, fair_key in sorted(work.fair):
        gauge = gauges[f"fair:{queue}:{fair_key}"]
        due = slots.visible(database, queue, fair_key)
        skipped = False
        if due > FAIR_WINDOW:
            slots.hold_due(database, "fair_key", fair_key, gauge.key, queue=queue, keep=FAIR_WINDOW)
        elif due < FAIR_WINDOW:
            woken, skipped = slots.let_go(database, gauge.key, FAIR_WINDOW - due, now=now)
            wake |= woken
        if gauge.look_again(now, slots.holds_any(database, gauge.key), skipped):
            changed.append(gauge.row)
    keysets.save_release(changed, database)
    return wake


def look_again(database: str, now: datetime) -> float:
    """Settle the keys whose ``release_at`` has come (a rate's window moved on, a backstop);
    return the seconds until the next one is due, at most LOOK_EVERY."""
    horizon = now + timedelta(seconds=LOOK_EVERY)
    due: list[str] = []
    soonest = horizon
    for rows, name in (
        (Limit.objects.using(database), "key"),
        (Queue.objects.using(database), "name"),
    ):
        found = rows.filter(release_at__lte=horizon).order_by("release_at")
        for value, release_at in found.values_list(name, "release_at")[:LOOK_AT_MOST]:
            if release_at <= now:
                due.append(value if name == "key" else f"queue:{value}")
            else:
                soonest = min(soonest, release_at)
    if due:
        with transaction.atomic(using=database):
            settle_slots(database, (), due, now)
    return max((soonest - now).total_seconds(), MIN_LOOK)
