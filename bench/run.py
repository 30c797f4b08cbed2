"""taskmill against its peers: one command, one table. See bench/README.md.

python -m bench [--quick] [--peers a,b] [--only enqueue,drain,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .collect import measure_system, taskmill_extras
from .environment import REPO, cpu_model, loadavg
from .limits import limits_report
from .orchestrate import kill_leftover_workers, log
from .report import errors, extras_report, main_table, settings_lines, variants_report
from .systems import BY_NAME, SYSTEMS

FIGURES = ("enqueue", "bulk", "drain", "latency", "limits", "raw", "engines", "rss", "processes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: small N, 2 repeats")
    p.add_argument(
        "--peers",
        help="comma-separated systems (taskmill is always measured): "
        + ", ".join(s.name for s in SYSTEMS[1:]),
    )
    p.add_argument("--only", help="comma-separated figures: " + ", ".join(FIGURES))
    p.add_argument("--repeat", type=int, help="measurements per figure (default 3, quick 2)")
    p.add_argument("--n", type=int, help="jobs per bulk/drain measurement (default 5000)")
    p.add_argument("--enqueue-n", type=int, help="one-by-one enqueues (default 1000)")
    p.add_argument("--latency-m", type=int, help="probes per latency round (default 200)")
    p.add_argument(
        "--budget",
        type=float,
        help="seconds a drain may take before its rate is "
        "taken over what finished (default 10; such cells are marked *)",
    )
    p.add_argument("--rss-big", type=int, help="tasks for the RSS drift figure (default 100000)")
    p.add_argument(
        "--limits-n", type=int, help="runs per drain of the per-key limit figures (default 5000)"
    )
    p.add_argument("--limits-keys", type=int, help="keys those runs are spread over (default 1000)")
    p.add_argument(
        "--limits-lines",
        help="comma-separated names of the limits' drains to measure (default all; "
        "bench/limits.py names them: keys-free-c1, keys-c1, queue-20ms, ...)",
    )
    p.add_argument("--json", type=Path, help="write every raw measurement to this file")
    p.add_argument("--report", type=Path, help="print the report of a saved --json file again")
    args = p.parse_args(argv)
    q = args.quick
    args.repeat = args.repeat or (2 if q else 3)
    args.n = args.n or (1000 if q else 5000)
    args.enqueue_n = args.enqueue_n or (200 if q else 1000)
    args.latency_m = args.latency_m or (40 if q else 200)
    args.budget = args.budget or (5.0 if q else 10.0)
    args.rss_small = 1000
    args.rss_big = args.rss_big or (10_000 if q else 100_000)
    args.raw_n = 5000 if q else 20_000
    args.cpu_n = 200 if q else 600
    args.sleep_n = 400 if q else 2000
    args.gap_ms = [20, 40]
    args.limits_n = args.limits_n or (1000 if q else 5000)
    args.limits_keys = args.limits_keys or (200 if q else 1000)
    args.nap_ms = [20, 50]  # the queue limit's sleeping tasks
    args.nap_seconds = 2.0 if q else 5.0  # of the ideal drain: sets how many runs
    args.pgq_nap_batches = [10, 4]
    args.only_set = set(FIGURES)
    if args.only:
        args.only_set = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = args.only_set - set(FIGURES)
        if unknown:
            p.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    names = [s.name for s in SYSTEMS]
    if args.peers:
        wanted = {x.strip() for x in args.peers.split(",") if x.strip()}
        unknown = wanted - set(names)
        if unknown:
            p.error(f"unknown system(s): {', '.join(sorted(unknown))}")
        names = ["taskmill"] + [n for n in names[1:] if n in wanted]  # taskmill: always
    args.systems = [BY_NAME[n] for n in names]
    return args


def facts(args: argparse.Namespace) -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *a], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return "?"

    import psycopg

    from .environment import server_params

    with psycopg.connect(dbname="postgres", **server_params()) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    dirty = (
        " + uncommitted changes in taskmill/" if git("status", "--porcelain", "taskmill") else ""
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}",
        "postgresql": pg,
        "python": platform.python_version(),
        "taskmill": f"commit {git('rev-parse', '--short', 'HEAD')}{dirty}",
        "sizes": f"N={args.n} jobs per bulk/drain, {args.enqueue_n} one-by-one enqueues, "
        f"{args.latency_m} latency probes, {args.repeat} repeats, drain budget {args.budget:g} s",
        "loadavg_start": loadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        print_report(saved["facts"], saved["results"], saved["extras"], args)
        return 0
    began = time.monotonic()
    info = facts(args)
    results: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    try:
        for system in args.systems:
            results[system.name] = measure_system(system, args, args.only_set)
        if args.only_set & {"raw", "engines", "rss", "processes"}:
            extras = taskmill_extras(args, args.only_set)
    except KeyboardInterrupt:
        log("interrupted: cleaning up, printing what was measured")
    finally:
        kill_leftover_workers()
    info["loadavg_end"] = loadavg()
    info["duration"] = f"{time.monotonic() - began:.0f} s"
    # saved before printing, so that the report can be printed again (--report)
    out = args.json or Path(tempfile.gettempdir()) / f"bench-{int(time.time())}.json"
    out.write_text(json.dumps({"facts": info, "results": results, "extras": extras}, indent=1))
    print_report(info, results, extras, args)
    print(f"\nraw measurements written to {out}")
    return 0


def print_report(
    info: dict[str, Any], results: dict[str, Any], extras: dict[str, Any], args: argparse.Namespace
) -> None:

    print()
    print(
        "taskmill vs its peers: one worker process each, no-op tasks, same PostgreSQL "
        "(fresh database each), Redis for the * references"
    )
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(
        "  each cell: the median of the repeats; the line below it: min-max; * after a "
        "figure: the drain did not finish within the budget, rate over what did"
    )
    print("  best DB peer: the best PostgreSQL-backed peer, its tuned line included")
    print()
    if main := main_table(results, args.systems):
        print(main)
        print()
    if variants := variants_report(results, args.systems):
        print(variants)
    print(limits_report(results, args.systems))
    print(extras_report(extras, results))
    print("settings (C = the concurrency of the figure; per-job logging off for every system):")
    print("\n".join(settings_lines(args.systems)))
    problems = errors(results)
    if problems:
        print()
        print("errors:")
        print("\n".join(problems))


if __name__ == "__main__":
    sys.exit(main())
