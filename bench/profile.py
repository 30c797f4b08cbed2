"""``python -m bench.profile``: where a draining worker's time goes; a profile, not a test.

Fills a fresh database with no-op runs, drains them with a real ``taskmill worker --burst``
under py-spy (sampling every thread, idle waits included), and prints each thread's share of
the samples and, per thread, the hot path's stages: claim, run, finish (the outcomes'
write), rollups, heartbeat, and the time spent waiting on the database or for work. The
shares are of wall time: a thread blocked in the database counts as much as one computing.

    python -m bench.profile --db sqlite --runs 30000
    python -m bench.profile --db postgresql --task burn_cpu --runs 1000   # 10 ms CPU-bound
    python -m bench.profile --db postgresql --task keyed --keys 1000 --runs 5000  # limit 1 a key

It uses the test suite's settings and tasks (``tests/settings.py``; the worker without
Django's per-task log lines, as in ``python -m bench``), creates its own
database (``test_taskmill_profbench``) and drops it at the end. py-spy needs ptrace: as root
here; elsewhere, ``sudo`` or ``kernel.yama.ptrace_scope=0``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = "_profbench"

# A sample's stage: the first of these function names found in its stack, innermost first,
# so the claim that rides in the outcomes' transaction counts as the claim. Names are
# taskmill's own (a method as Class.name).
STAGES = [
    ("claim", ("Engine.claim", "claim_runs")),
    ("limits' gate", ("settle_slots",)),
    ("rollups", ("add_stats",)),
    ("finish (the outcomes' write)", ("write_outcomes",)),
    ("heartbeat and duties", ("Heartbeat.beat", "StartRecorder.record", "Lifeline", "Pruner")),
    ("run the task", ("Task.call", "run_sync")),
    ("hand runs over", ("Executor.submit", "Worker._on_done", "_collect_done", "Executor._done")),
]
# Leaves that mean the thread waits for nothing in particular (a timer, a queue, a pipe)...
IDLE = ("Event.wait", "Condition.wait", "StopSignals._relay", "Queue.get", "select.select")
# The task thread blocked on its queue of runs (a C call: the frame is the caller).
WAITING_FOR_RUNS = ("Executor._serve",)
# ...and those that mean it waits for (or, SQLite, runs inside) the database.
DATABASE = ("Connection.wait", "wait_conn", "execute", "executemany", "commit", "fetchall")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--db", choices=["postgresql", "mysql", "sqlite"], default="sqlite")
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument(
        "--task",
        choices=["noop", "burn_cpu", "keyed"],
        default="noop",
        help="keyed: a no-op with concurrency_limit=1 per key, over --keys keys in turn",
    )
    parser.add_argument("--keys", type=int, default=1000, help="keys of --task keyed")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    parser.add_argument("--top", type=int, default=12, help="hottest functions shown")
    parser.add_argument("--keep", help="also keep py-spy's raw output in this file")
    parser.add_argument("worker_args", nargs="*", help="more `taskmill worker` arguments")
    return parser.parse_args(argv)


def _named(frame: str, names: tuple[str, ...]) -> bool:
    name = frame.split(" (")[0]
    return any(name == wanted or name.endswith("." + wanted) for wanted in names)


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for stage, names in STAGES:
            if _named(frame, names):
                return stage
    return "other"


def report(raw: Path, top: int) -> list[str]:
    """py-spy's raw (collapsed) output: one line per distinct stack, then its sample count."""
    threads: collections.Counter[str] = collections.Counter()
    stages: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1]
        if thread.startswith("thread ("):
            continue  # a thread seen without a name: start-up, exit
        samples = int(count)
        total += samples
        threads[thread] += samples
        busy = frames[1:]
        if not busy or _named(busy[-1], IDLE):
            stages[thread]["idle (a timer, a queue, a signal pipe)"] += samples
            continue
        if _named(busy[-1], WAITING_FOR_RUNS):
            stages[thread]["waiting for a run to start"] += samples
            continue
        stage = stage_of(busy)
        if _named(busy[-1], DATABASE):
            stage += ", in the database"
        stages[thread][stage] += samples
        leaves[busy[-1].split(" (")[0]] += samples
    lines = [f"{total:,} samples"]
    for thread, samples in threads.most_common():
        lines.append(f"  {samples / total:6.1%}  thread {thread}")
        for stage, count in stages[thread].most_common():
            lines.append(f"      {count / samples:6.1%}  {stage}")
    busy_total = sum(leaves.values())
    lines.append(f"hottest functions (share of the {busy_total:,} samples not idle):")
    for leaf, count in leaves.most_common(top):
        lines.append(f"  {count / busy_total:6.1%}  {leaf}")
    return lines


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy (it is in taskmill[dev])")
    from . import processes  # its database set-up serves here too

    env = processes.setup(options.db, SUFFIX)
    from django.db import connection
    from django.db.models import Max, Min

    from taskmill.models import Run
    from tests.testapp import limit_tasks, process_tasks, tasks

    env["DJANGO_SETTINGS_MODULE"] = "bench.profile_settings"  # the worker's, not this process's
    if options.task == "keyed":  # sync_account: concurrency_limit=1 per account
        task = limit_tasks.sync_account
        keys = options.keys
        calls = [((), {"account": f"k{i % keys}", "seconds": 0.0}) for i in range(options.runs)]
    else:
        task, args = (
            (tasks.noop, ()) if options.task == "noop" else (process_tasks.burn_cpu, (10.0,))
        )
        calls = [(args, {})] * options.runs
    try:
        task.enqueue_many(calls)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE taskmill_run")
        with tempfile.TemporaryDirectory() as scratch:
            raw = Path(options.keep) if options.keep else Path(scratch) / "profile.txt"
            command = [py_spy, "record", "--idle", "--threads", "--rate", str(options.rate)]
            command += ["--format", "raw", "--output", str(raw), "--", sys.executable]
            command += ["-m", "django", "taskmill", "worker", "--burst", "--no-reload"]
            command += ["--no-scheduler", "--verbosity", "0", *options.worker_args]
            began = time.perf_counter()
            subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
            wall = time.perf_counter() - began
            done = Run.objects.filter(status="SUCCESSFUL")
            span = done.aggregate(first=Min("started_at"), last=Max("finished_at"))
            rate = done.count() / (span["last"] - span["first"]).total_seconds()
            print(
                f"bench.profile: {options.db}, {options.runs:,} {options.task} runs, "
                f"{rate:,.0f} runs/s under py-spy ({options.rate} samples/s; wall {wall:.1f} s, "
                f"start-up included); load average {os.getloadavg()[0]:.2f}"
            )
            for line in report(raw, options.top):
                print(line)
    finally:
        processes.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
