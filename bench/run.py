"""taskmill vs django-tasks-db on one PostgreSQL: enqueue, bulk enqueue, drain, latency.

Run from the repository root:  python -m bench [--quick] [--runs N] [--latency-samples M]
See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .environment import (
    PEER,
    TASKMILL,
    check_requirements,
    create_database,
    drop_database,
    loadavg,
    machine_facts,
    setup_django,
    use_taskmill_rev,
)
from .figures import (
    LatencyResult,
    fig_bulk,
    fig_drain,
    fig_enqueue,
    fig_enqueue_in_transaction,
    fig_latency,
    percentile,
)
from .systems import peer_worker_cmd, systems, taskmill_worker_cmd

# -- report ----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def print_table(rows: list[tuple[str, str, str, str]], header: tuple[str, str, str, str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)

    def fmt(r):
        return "  ".join(
            r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i]) for i in range(4)
        )

    print(fmt(header))
    print(line)
    for r in rows:
        if r[1] == r[2] == r[3] == "":
            print(r[0])
        else:
            print(fmt(r))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="taskmill vs django-tasks-db on one PostgreSQL (see bench/README.md).",
    )
    p.add_argument("--runs", type=int, help="N: runs per bulk/drain measurement (default 3000)")
    p.add_argument(
        "--enqueue-runs",
        type=int,
        help="one-by-one .enqueue() calls per measurement, figures 1 and 2's peer line "
        "(default 1000)",
    )
    p.add_argument(
        "--latency-samples", type=int, help="M: probes per latency measurement (default 200)"
    )
    p.add_argument(
        "--repeat", type=int, help="measurements per figure; the median is reported (default 3)"
    )
    p.add_argument("--quick", action="store_true", help="N=1000, M=60, 2 repeats: a smoke run")
    p.add_argument(
        "--taskmill-concurrency",
        type=int,
        default=8,
        help="a second taskmill drain line with this --concurrency (0: skip; default 8)",
    )
    p.add_argument(
        "--peer-intervals",
        default="0,0.1",
        help="db_worker --interval values for the latency figure, comma-separated; the first is "
        "the one the ratio uses (default 0,0.1: busy polling, and a 100 ms poll)",
    )
    p.add_argument(
        "--gap-ms", default="20,40", help="random gap between latency probes (default 20,40)"
    )
    p.add_argument(
        "--only",
        choices=["enqueue", "bulk", "drain", "latency"],
        action="append",
        help="run only these figures (repeatable)",
    )
    p.add_argument(
        "--database",
        default=os.environ.get("TASKMILL_BENCH_DB", "taskmill_bench"),
        help="benchmark database name, created and dropped by the run (default taskmill_bench)",
    )
    p.add_argument(
        "--keep-database", action="store_true", help="do not drop the database at the end"
    )
    p.add_argument(
        "--taskmill-rev",
        metavar="REV",
        help="benchmark taskmill as committed at this git revision (e.g. HEAD), from a "
        "snapshot, instead of the work tree",
    )
    p.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    args = p.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (1000 if quick else 3000)
    args.enqueue_runs = args.enqueue_runs or (300 if quick else 1000)
    args.latency_samples = args.latency_samples or (60 if quick else 200)
    args.repeat = args.repeat or (2 if quick else 3)
    if min(args.repeat, args.runs, args.enqueue_runs, args.latency_samples) < 1:
        p.error("--runs, --enqueue-runs, --latency-samples and --repeat must be at least 1")
    args.peer_intervals = [float(x) for x in args.peer_intervals.split(",") if x.strip()]
    lo, hi = (float(x) for x in args.gap_ms.split(","))
    args.gap = (lo, hi)
    args.warmup = max(50, min(500, args.runs // 10))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_requirements()
    os.environ["TASKMILL_BENCH_DB"] = args.database  # the settings (and the workers) read it
    only = set(args.only or ["enqueue", "bulk", "drain", "latency"])
    t_start = time.monotonic()
    use_taskmill_rev(args.taskmill_rev)
    create_database(args.database)
    try:
        setup_django()
        facts = machine_facts(args)
        tm, peer = systems()
        raw: dict[str, Any] = {"facts": facts}
        rows: list[tuple[str, str, str, str]] = []
        n, r, warm = args.runs, args.repeat, args.warmup
        logdir = Path(tempfile.mkdtemp(prefix="taskmill-bench-"))

        def progress(msg: str) -> None:
            print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

        if "enqueue" in only:
            progress("enqueue one by one")
            ne, we = args.enqueue_runs, max(50, args.enqueue_runs // 10)
            a = fig_enqueue(tm, ne, r, we)
            b = fig_enqueue(peer, ne, r, we)
            raw["enqueue"] = {TASKMILL: a, PEER: b}
            rows.append(
                (
                    "1. enqueue, one by one (runs/s)",
                    fmt_rate(median(a)),
                    fmt_rate(median(b)),
                    ratio(median(a), median(b)),
                )
            )
        if "bulk" in only:
            progress("bulk enqueue")
            a = fig_bulk(tm, n, r, warm)
            ne, we = args.enqueue_runs, max(50, args.enqueue_runs // 10)
            ta = fig_enqueue_in_transaction(tm, ne, r, we)
            tb = fig_enqueue_in_transaction(peer, ne, r, we)
            raw["bulk"] = {TASKMILL: a, PEER: None}
            raw["enqueue_in_one_transaction"] = {TASKMILL: ta, PEER: tb}
            rows.append(("2. bulk enqueue (runs/s)", fmt_rate(median(a)), "n/a", "n/a"))
            rows.append(("   peer's best equivalent: N x enqueue() in one", "", "", ""))
            rows.append(
                (
                    "   transaction.atomic() (runs/s)",
                    fmt_rate(median(ta)),
                    fmt_rate(median(tb)),
                    ratio(median(ta), median(tb)),
                )
            )
            rows.append(
                (
                    "   taskmill bulk vs that peer equivalent",
                    fmt_rate(median(a)),
                    fmt_rate(median(tb)),
                    ratio(median(a), median(tb)),
                )
            )
        if "drain" in only:
            peer_cmd = peer_worker_cmd(burst=True, interval=0.0)
            progress(f"drain: {PEER}")
            pb, ps = fig_drain(peer, peer_cmd, n, r, warm, logdir)
            lines = [1] + ([args.taskmill_concurrency] if args.taskmill_concurrency > 1 else [])
            raw["drain"] = {PEER: {"startup_s": ps, "runs": [d.__dict__ for d in pb]}}
            for c in lines:
                progress(f"drain: taskmill --concurrency {c}")
                ta, ts = fig_drain(
                    tm, taskmill_worker_cmd(burst=True, concurrency=c), n, r, warm, logdir
                )
                raw["drain"][f"{TASKMILL} c={c}"] = {
                    "startup_s": ts,
                    "runs": [d.__dict__ for d in ta],
                }
                a_db, b_db = median([d.db_rate for d in ta]), median([d.db_rate for d in pb])
                a_w, b_w = median([d.wall_rate for d in ta]), median([d.wall_rate for d in pb])
                rows.append((f"3. drain, 1 process, taskmill --concurrency {c}", "", "", ""))
                rows.append(
                    (
                        "   from DB timestamps (runs/s)",
                        fmt_rate(a_db),
                        fmt_rate(b_db),
                        ratio(a_db, b_db),
                    )
                )
                rows.append(
                    (
                        "   from first start to process exit (runs/s)",
                        fmt_rate(a_w),
                        fmt_rate(b_w),
                        ratio(a_w, b_w),
                    )
                )
                if c == 1:
                    rows.append(
                        (
                            "   worker start-up+exit, empty queue (s)",
                            f"{ts:.2f}",
                            f"{ps:.2f}",
                            ratio(ts, ps),
                        )
                    )
        if "latency" in only:
            progress("latency: taskmill")
            la = fig_latency(
                tm,
                taskmill_worker_cmd(burst=False, concurrency=1),
                args.latency_samples,
                r,
                args.gap,
                logdir,
            )
            raw["latency"] = {TASKMILL: [x.__dict__ for x in la]}
            peer_lat = {}
            for interval in args.peer_intervals:
                progress(f"latency: {PEER} --interval {interval:g}")
                lb = fig_latency(
                    peer,
                    peer_worker_cmd(burst=False, interval=interval),
                    args.latency_samples,
                    r,
                    args.gap,
                    logdir,
                )
                peer_lat[interval] = lb
                raw["latency"][f"{PEER} interval={interval:g}"] = [x.__dict__ for x in lb]

            def pct(results: list[LatencyResult], attr: str, q: float) -> float:
                return median([percentile(getattr(x, attr), q) for x in results])

            first_interval = args.peer_intervals[0]
            measures = (
                ("task_start", "4. enqueue-to-start (ms): task body start - before .enqueue()"),
                ("after_call", "   task body start - .enqueue() returned (ms)"),
                ("stored", "   stored started_at - enqueued_at (ms)"),
            )
            for attr, title in measures:
                for interval, lb in peer_lat.items():
                    if attr != "task_start" and interval != first_interval:
                        continue
                    rows.append((f"{title}, peer --interval {interval:g}", "", "", ""))
                    for q in (50, 95, 99):
                        a, b = pct(la, attr, q), pct(lb, attr, q)
                        rows.append((f"   p{q}", fmt_ms(a), fmt_ms(b), ratio(a, b)))
            a, b = pct(la, "enqueue_call", 50), pct(peer_lat[first_interval], "enqueue_call", 50)
            rows.append(
                (
                    "   .enqueue() call itself while a worker idles, p50 (ms)",
                    fmt_ms(a),
                    fmt_ms(b),
                    ratio(a, b),
                )
            )

        facts["loadavg_end"] = loadavg()
        print()
        print("taskmill vs django-tasks-db: one worker process each, same PostgreSQL, no-op tasks")
        for key, value in facts.items():
            print(f"  {key}: {value}")
        print(
            f"  figures: median of {r} measurements each, after a warm-up; ratio = taskmill / peer"
        )
        print()
        print_table(rows, ("figure", TASKMILL, PEER, "ratio"))
        print()
        print(f"total bench time {time.monotonic() - t_start:.0f}s; worker logs in {logdir}")
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1, default=str))
            print(f"raw measurements written to {args.json}")
    finally:
        if not args.keep_database:
            drop_database(args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
