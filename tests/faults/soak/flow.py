"""The checker's flow-control columns (issue 23).

- **limit exceeded**, from the side-effect log: a moment when more bodies of one key ran at
  once than its concurrency limit (a key of ``one_per_account``, ``two_at_once``, the
  ``metered`` queue), or a start that made more starts of a rated task in one window than
  its rate (counted at its claim where a frozen worker or the database restarting kept its
  body from beginning: the gate counts starts at the claims). A body counts for as long
  as its slot was held: to its end if its attempt's
  outcome landed; else (its worker was killed, or frozen past its lease and its run rescued)
  only until the database gave its slot back, which is no sooner than the watch last saw it
  RUNNING and its lease then (``FlowWatch.release_after``). A frozen body goes on after its
  rescue and a killed one has no end: both would otherwise overlap the runs the freed slot
  rightly let start. A body begun after its slot was given back (a thawed worker's) is the
  fencing's business (the doubled column), not the limit's, and is left out.
- **slot leaked**, from the database as the soak watched it (``watch.py``): a slot held by a
  RUNNING run past its lease, a queue marked at its limit with room, runs held back by a key
  with room and nothing of theirs due, each for longer than a lease not counting the times a
  worker was frozen or the database restarting (a frozen worker may hold the locks that the
  freeing waits for); and, at the end, runs still held back or a queue still marked full
  when nothing runs.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskmill.limits.gate import RATE_MARGIN, RATE_MARGIN_MOST
from tests.testapp import soak_tasks

from .profiles import LEASE_SECONDS, METERED_LIMIT, METERED_QUEUE
from .watch import FlowWatch

# The task name a body's key starts with -> its limit.
CONCURRENCY = {
    "one_per_account": soak_tasks.one_per_account.concurrency_limit,  # per account
    "two_at_once": soak_tasks.two_at_once.concurrency_limit,
    METERED_QUEUE: METERED_LIMIT,
}
RATED = {"rate_limited": soak_tasks.rate_limited}  # the task: its rate_limit, its path
SHOWN = 3  # runs named per reported moment
# (from, to, the worker frozen, or None: the database restarting), from chaos.Chaos.
Disruption = tuple[float, float, int | None]


@dataclass(frozen=True)
class Body:
    """One attempt's body of a limited task, as its worker logged it."""

    key: str
    run_id: int
    attempt: int
    start: float
    end: float | None  # None: its worker died before it ended
    pid: int = 0  # the worker process that ran it


def read_bodies(record_dir: Path) -> list[Body]:
    """The limited tasks' bodies: their ``start`` and ``end`` lines carry a key and a time."""
    bodies = []
    for path in sorted(record_dir.glob("*.log")):
        started: dict[tuple[int, int], tuple[str, float]] = {}
        ended: dict[tuple[int, int], float] = {}
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 6 and parts[0] == "start":
                started[(int(parts[1]), int(parts[2]))] = (parts[4], float(parts[5]))
            elif len(parts) == 5 and parts[0] == "end":
                ended[(int(parts[1]), int(parts[2]))] = float(parts[4])
        for (run_id, attempt), (key, start) in started.items():
            end = ended.get((run_id, attempt))
            bodies.append(Body(key, run_id, attempt, start, end, int(path.stem)))
    return bodies


def held_until(body: Body, row: dict | None, watch: FlowWatch) -> float | None:
    """Until when ``body`` ran holding its slot; None if it held none (begun after its slot
    was given back, or never seen holding one)."""
    landed = (
        body.end is not None
        and row is not None
        and row["status"] == "SUCCESSFUL"
        and body.attempt == len(row["worker_ids"])
    )
    if landed:
        return body.end
    released = watch.release_after(body.run_id, body.attempt)
    if released is None or released < body.start:
        return None
    return released if body.end is None else min(body.end, released)


def crowded(spans: Sequence[tuple[float, float, int]], limit: int) -> list[tuple[float, list]]:
    """The moments more than ``limit`` of ``spans`` (start, end, run) were open at once:
    (when, the runs open). At equal times an end comes first: a slot freed and taken at
    once is no overlap."""
    events = sorted(
        [(start, 1, n) for n, (start, end, _) in enumerate(spans) if end > start]
        + [(end, 0, n) for n, (start, end, _) in enumerate(spans) if end > start]
    )
    open_now: set[int] = set()
    moments = []
    for at, starts, n in events:
        if not starts:
            open_now.discard(n)
            continue
        open_now.add(n)
        if len(open_now) > limit:
            moments.append((at, sorted(spans[i][2] for i in open_now)))
    return moments


def too_many_starts(
    starts: Sequence[tuple[float, int]], count: int, per: float
) -> list[tuple[float, list[tuple[float, int]]]]:
    """The starts (when, run) that made more than ``count`` in the window of ``per`` seconds
    ending there: (when, the starts in that window)."""
    ordered = sorted(starts)
    moments, first = [], 0
    for last, (at, _) in enumerate(ordered):
        while ordered[first][0] <= at - per:
            first += 1
        if last - first + 1 > count:
            moments.append((at, ordered[first : last + 1]))
    return moments


def check_limits(
    report,
    bodies: Sequence[Body],
    rows: dict[int, dict],
    watch: FlowWatch,
    disrupted: Sequence[Disruption] = (),
) -> None:
    report.flow_bodies = Counter(body.key.partition(":")[0] for body in bodies)
    holding: dict[str, list[tuple[float, float, Body]]] = defaultdict(list)
    for body in bodies:
        until = held_until(body, rows.get(body.run_id), watch)
        if until is not None:
            holding[body.key].append((body.start, until, body))
    for key, spans in sorted(holding.items()):
        name = key.partition(":")[0]
        if name in CONCURRENCY:
            limit = CONCURRENCY[name]
            runs = [(start, end, body.run_id) for start, end, body in spans]
            peak = max((len(open_runs) for _, open_runs in crowded(runs, 0)), default=0)
            report.flow_peaks[name] = max(report.flow_peaks[name], peak)
            for at, open_runs in crowded(runs, limit):
                report.flow_exceeded["running at once"] += 1
                report.flag(
                    "limit_exceeded",
                    f"{key}: {len(open_runs)} ran at once at {at:.3f} (limit {limit}): "
                    f"runs {open_runs[: SHOWN + 1]}",
                )
        if name in RATED:
            task = RATED[name]
            begun = sorted(
                at
                for ledger_key, at in watch.ledger.values()
                if ledger_key == f"rate:{task.module_path}"
            )
            bodies_of_key = [body for _, _, body in spans]
            _check_rate(report, key, bodies_of_key, watch, task.rate_limit, disrupted, begun)
    for task in RATED.values():
        _check_ledger(report, task, watch)


# How close the gate's record of a beginning is to the body's own (two clocks, one machine).
BEGUN_MATCH = 0.05


def counted_at(
    body: Body,
    watch: FlowWatch,
    disrupted: Sequence[Disruption],
    begun: Sequence[float] = (),
) -> float:
    """When a rated body's start counts: when it began, as the gate counts it (pending
    from its claim, then at its beginning: no window of beginnings holds more than the
    rate); or, if its own worker was frozen between its claim and then, at its claim: the
    freeze kept it waiting, and its run may have been rescued meanwhile (a stale body the
    gate rightly forgot). A database restart in between moves nothing: the worker writes
    the beginning once the database is back, and the gate counts it there."""
    claimed = watch.claimed.get((body.run_id, body.attempt))
    if claimed is None:
        return body.start
    for since, until, pid in disrupted:
        if pid == body.pid and since < body.start and until > claimed:
            # Still its run's attempt when it began: the gate recorded its beginning (its
            # ``begun``, sorted), and counted it there.
            at = bisect.bisect_left(begun, body.start - BEGUN_MATCH)
            if at < len(begun) and begun[at] <= body.start + BEGUN_MATCH:
                return body.start
            return claimed
    return body.start


def _check_rate(
    report,
    key: str,
    bodies: Sequence[Body],
    watch: FlowWatch,
    rate,
    disrupted,
    begun: Sequence[float] = (),
) -> None:
    """Starts in any window of the rate's length. The report names the bodies of the window
    that began longest after their claim (a worker's backlog, a busy machine)."""
    starts = [(counted_at(body, watch, disrupted, begun), n) for n, body in enumerate(bodies)]
    report.flow_counted_at_claim += sum(at != bodies[n].start for at, n in starts)
    for at, members in too_many_starts(starts, rate.count, rate.seconds):
        waits = sorted(
            (
                (body.start - watch.claimed[(body.run_id, body.attempt)], body.run_id)
                for body in (bodies[n] for _, n in members)
                if (body.run_id, body.attempt) in watch.claimed
            ),
            reverse=True,
        )[:SHOWN]
        waited = ", ".join(f"run {run_id} {wait:.2f}s" for wait, run_id in waits) or "unknown"
        report.flow_exceeded["rated bodies begun"] += 1
        report.flag(
            "limit_exceeded",
            f"{key}: {len(members)} starts in the {rate.seconds:g}s to {at:.3f} (rate {rate}); "
            f"the longest from claim to start: {waited}",
        )


def _check_ledger(report, task, watch: FlowWatch) -> None:
    """The starts the gate recorded, at their bodies' beginnings, in its own window (a
    little longer than the rate's: gate.RATE_MARGIN): more than the rate there is the
    gate's own fault."""
    rate = task.rate_limit
    window = rate.per + min(rate.per * RATE_MARGIN, RATE_MARGIN_MOST)
    key = f"rate:{task.module_path}"
    recorded = [(at, n) for n, (ledger_key, at) in watch.ledger.items() if ledger_key == key]
    report.flow_ledger[key] = len(recorded)
    for at, members in too_many_starts(recorded, rate.count, window.total_seconds()):
        report.flow_exceeded["rated starts the gate recorded"] += 1
        report.flag(
            "limit_exceeded",
            f"{key}: the gate recorded {len(members)} starts in the "
            f"{window.total_seconds():g}s to {at:.3f} (rate {rate})",
        )


def merged(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def leaks(
    samples: Sequence[tuple[float, frozenset[str]]],
    disrupted: Iterable[tuple[float, float]],
    longer_than: float = LEASE_SECONDS,
) -> list[tuple[str, float, float]]:
    """What stayed blocked in consecutive samples for longer than ``longer_than`` seconds,
    the ``disrupted`` times left out: (what, first seen, last seen)."""
    excused = merged(disrupted)

    def counted(since: float, until: float) -> float:
        overlap = sum(max(0.0, min(until, b) - max(since, a)) for a, b in excused)
        return until - since - overlap

    found = []
    since: dict[str, float] = {}
    last = -math.inf
    for at, blocked in [*samples, (math.inf, frozenset())]:
        for what in [what for what in since if what not in blocked]:
            began = since.pop(what)
            if counted(began, last) > longer_than:
                found.append((what, began, last))
        for what in blocked:
            since.setdefault(what, at)
        last = at
    return sorted(found, key=lambda leak: leak[1])


def check_leaks(report, watch: FlowWatch, disrupted: Sequence[Disruption]) -> None:
    from taskmill.models import Queue, Run, RunStatus

    for what, began, last in leaks(watch.samples, [(a, b) for a, b, _ in disrupted]):
        report.flag("slot_leaked", f"{what} from {began:.3f} to {last:.3f} ({last - began:.1f}s)")

    # The end: nothing runs, so no key may hold a run back, and no queue may be full.
    held = Run.objects.filter(status=RunStatus.READY, held_by__isnull=False)
    for key in sorted(set(held.values_list("held_by", flat=True))):
        report.flag("slot_leaked", f"{key} holds runs back at the end, with nothing running")
    for name in Queue.objects.filter(at_limit=True).values_list("name", flat=True):
        report.flag("slot_leaked", f"queue {name} is marked at its limit at the end")


def check_flow(
    report,
    record_dir: Path,
    rows: dict[int, dict],
    watch: FlowWatch | None,
    disrupted: Sequence[Disruption],
) -> None:
    watch = watch or FlowWatch()
    check_limits(report, read_bodies(record_dir), rows, watch, disrupted)
    check_leaks(report, watch, disrupted)
