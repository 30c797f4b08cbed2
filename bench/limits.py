"""Flow control's figures (issue 23), `python -m bench --only limits`: drains with limits,
each set against the same drain without them, or against its ideal.

- **Per key**: N runs (5,000) over K keys (1,000) of a no-op with ``concurrency_limit=1``
  per key, against the same N calls of the same no-op without a limit, on the same worker
  (goal: >= 50%). Keys in turn (key ``i % K``: a claim's batch meets each key about once),
  and in blocks (key ``i*K // N``: a batch meets a few keys, each several times, and holds
  the rest of their backlog back).
- **Queue limit**: runs that sleep a fixed time in a queue limited to 4 at once
  (``QUEUE_LIMITS``), drained by 2 workers of concurrency 4 each, against the ideal of 4
  slots busy all the time, 4 / duration runs a second (goal: >= 90%). Beside it, the same
  runs in an unlimited queue on 2 workers of concurrency 2 (4 slots without a gate): what
  the workers themselves lose.
- **Batch**: N no-ops enqueued in one ``taskmill.batch()``, against the same N enqueued
  alone (goal: >= 80%): what counting members under the batch's lock costs the worker.
- **pgqueuer beside it**: its limits are per entrypoint (``concurrency_limit``), so a limit
  per key is an entrypoint per key (K of them, limit 1 each, against the same K
  entrypoints without one), and a queue limit is the sleeping entrypoint's limit of 4 over
  2 worker processes.

Every line is a drain as the table's (bench/peers/common.py: the rate between the first
poll that sees a finished run and the one that sees all of them), R times after a warm-up.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .orchestrate import PeerError, Session, log
from .systems import System

Cell = dict[str, Any]
QUEUE_LIMIT = 4
LIMITED_ENV = {"BENCH_QUEUE_LIMITS": json.dumps({"limited": {"concurrency_limit": QUEUE_LIMIT}})}
# The systems with limits measured here.
LIMITED = ("taskmill", "pgqueuer")
KEY_SHARE_GOAL = 0.5
IDEAL_SHARE_GOAL = 0.9
BATCH_SHARE_GOAL = 0.8


@dataclass(frozen=True)
class Line:
    """One drain of the limits' figures."""

    name: str  # the cell's key, limits:<name>
    label: str
    kind: str  # what the adapter fills (bench/peers/*_adapter.py fill)
    n: int
    variant: str = "default"
    concurrency: int = 1
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    against: str | None = None  # the line it is a share of (the same drain without limits)
    without: str = "no limit"  # what ``against`` lacks, as the share says it
    ideal: float | None = None  # or the ideal rate it is a share of
    goal: float | None = None  # the share asked

    @property
    def worker_text(self) -> str:
        if self.variant.startswith(("cli-", "run-", "qm-")):
            return f"{self.workers} x {self.variant}"
        return f"{self.workers} x c={self.concurrency}"


def lines_for(system: System, args: argparse.Namespace) -> list[Line]:
    n, keys = args.limits_n, args.limits_keys
    per = f"{n:,} runs, {keys:,} keys"
    out: list[Line] = []
    if system.name == "taskmill":
        for c in (1, 2):
            free = f"keys-free-c{c}"
            out += [
                Line(free, f"{per}, no limit", f"unkeyed:{keys}", n, concurrency=c),
                Line(
                    f"keys-c{c}",
                    f"{per}, concurrency_limit=1 per key (keys in turn)",
                    f"keyed:{keys}",
                    n,
                    concurrency=c,
                    against=free,
                    goal=KEY_SHARE_GOAL,
                ),
                Line(
                    f"keys-blocks-c{c}",
                    f"{per}, concurrency_limit=1 per key (keys in blocks)",
                    f"clustered:{keys}",
                    n,
                    concurrency=c,
                    against=free,
                    goal=KEY_SHARE_GOAL,
                ),
            ]
        for ms in args.nap_ms:
            nap_n = naps(ms, args)
            out.append(
                Line(
                    f"queue-{ms}ms",
                    f"{nap_n:,} x {ms} ms, queue limit {QUEUE_LIMIT}",
                    f"nap_limited:{ms}",
                    nap_n,
                    concurrency=QUEUE_LIMIT,
                    workers=2,
                    env=LIMITED_ENV,
                    ideal=QUEUE_LIMIT * 1000 / ms,
                    goal=IDEAL_SHARE_GOAL,
                )
            )
        # Composition (issue 24): the same no-ops enqueued in one batch, its members counted
        # under the batch's lock as they end, its callback enqueued at the last.
        out += [
            Line("batch-free-c1", f"{n:,} no-ops", "noop", n),
            Line(
                "batch-c1",
                f"{n:,} no-ops in one batch",
                "batched",
                n,
                against="batch-free-c1",
                without="no batch",
                goal=BATCH_SHARE_GOAL,
            ),
        ]
        ms = args.nap_ms[0]
        out.append(
            Line(
                f"queue-free-{ms}ms",
                f"{naps(ms, args):,} x {ms} ms, no limit, 4 slots in all",
                f"nap:{ms}",
                naps(ms, args),
                concurrency=QUEUE_LIMIT // 2,
                workers=2,
                ideal=QUEUE_LIMIT * 1000 / ms,
            )
        )
    elif system.name == "pgqueuer":
        keyed = {"BENCH_PGQ_KEYS": str(keys)}
        for batch in (10, 100):
            base = f"cli-asyncpg-b{batch}"
            free = f"keys-free-b{batch}"
            out += [
                Line(
                    free,
                    f"{per}, {keys:,} entrypoints, no limit",
                    f"unkeyed:{keys}",
                    n,
                    base,
                    env=keyed,
                ),
                Line(
                    f"keys-b{batch}",
                    f"{per}, concurrency_limit=1 per entrypoint (keys in turn)",
                    f"keyed:{keys}",
                    n,
                    f"{base}-l1",
                    env=keyed,
                    against=free,
                    goal=KEY_SHARE_GOAL,
                ),
                Line(
                    f"keys-blocks-b{batch}",
                    f"{per}, concurrency_limit=1 per entrypoint (keys in blocks)",
                    f"clustered:{keys}",
                    n,
                    f"{base}-l1",
                    env=keyed,
                    against=free,
                    goal=KEY_SHARE_GOAL,
                ),
            ]
        for ms in args.nap_ms:
            nap_n = naps(ms, args)
            for batch in args.pgq_nap_batches:
                out.append(
                    Line(
                        f"queue-{ms}ms-b{batch}",
                        f"{nap_n:,} x {ms} ms, entrypoint concurrency_limit={QUEUE_LIMIT}",
                        f"nap:{ms}",
                        nap_n,
                        f"cli-asyncpg-b{batch}-l{QUEUE_LIMIT}",
                        workers=2,
                        ideal=QUEUE_LIMIT * 1000 / ms,
                        goal=IDEAL_SHARE_GOAL,
                    )
                )
    return out


def naps(ms: int, args: argparse.Namespace) -> int:
    """Sleeping runs enough for ``args.nap_seconds`` of the ideal drain."""
    return int(QUEUE_LIMIT * args.nap_seconds * 1000 / ms)


def limits_cells(s: Session, system: System, args: argparse.Namespace) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    wanted = set(args.limits_lines.split(",")) if args.limits_lines else None
    for line in lines_for(system, args):
        if wanted is not None and line.name not in wanted:
            continue
        log(f"  limits: {line.name} ({line.worker_text})")
        params = {
            "n": line.n,
            "repeat": args.repeat,
            "concurrency": [line.concurrency],
            "variant": line.variant,
            "budget": args.budget,
            "kind": line.kind,
            "workers": line.workers,
            "env": line.env,
        }
        try:
            result = s.call("drain", params)[str(line.concurrency)]
        except PeerError as exc:
            log(f"  limits: {line.name}: error: {exc}")
            cells[f"limits:{line.name}"] = {"error": str(exc)}
            continue
        runs = result["runs"]
        cells[f"limits:{line.name}"] = {
            "values": [r["rate"] for r in runs],
            "incomplete": not all(r["complete"] for r in runs),
            "line": asdict(line),
        }
    return cells


def limits_report(results: dict[str, dict[str, Cell]], systems: list[System]) -> str:
    """One table: each limited drain, and its share of the same drain without limits or of
    its ideal, against the goal."""
    from .report import fmt, med, table

    rows = [["system", "drain", "workers", "runs/s", "spread (min-max)", "share", "goal"]]
    for system in systems:
        cells = results.get(system.name, {})
        for key, cell in cells.items():
            if not key.startswith("limits:"):
                continue
            line = cell.get("line") or {}
            text, spread = fmt(cell, "rate")
            m = med(cell)
            reference, share, verdict = None, "", ""
            if line.get("against"):
                reference = med(cells.get(f"limits:{line['against']}"))
                of = f"of {line.get('without', 'no limit')}"
            elif line.get("ideal"):
                reference = line["ideal"]
                of = f"of ideal {reference:,.0f}/s"
            if m and reference:
                share = f"{m / reference:.0%} {of}"
                if line.get("goal") is not None:
                    met = "met" if m / reference >= line["goal"] else "NOT met"
                    verdict = f">={line['goal']:.0%}: {met}"
            workers = Line(**line).worker_text if line else ""
            label = line.get("label", key)
            rows.append([system.name, label, workers, text, spread, share, verdict])
    if len(rows) == 1:
        return ""
    return "\n".join(
        [
            "flow control and composition (issues 23, 24): drains with limits or in a batch, "
            "against the same drain without them or the ideal (4 slots busy all the time):",
            table(rows, right_from=3),
            "",
        ]
    )
