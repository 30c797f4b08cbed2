"""``python -m bench.processes``: what ``taskmill worker --processes N`` buys; figures, not a test.

Two figures (issue 14), each drained by a real ``taskmill worker --burst`` from a queue
filled beforehand:

1. CPU-bound tasks (``burn_cpu``: 10 ms of pure Python, measured in the thread's own CPU
   time) drained with ``--processes 1`` and ``--processes 2``: the ratio of the two rates.
   Threads share one interpreter lock, so only processes can use both cores of the machine.
   Goal: at least 1.7x on 2 cores.
2. Sleeping tasks (``sleep_ms``: ``time.sleep(0.01)``) at ``--concurrency 4`` in one process:
   the rate against the ideal of 4 / 10 ms = 400 runs/s. Goal: at least 90% of it.

A rate is runs / the drain window: from the first run's start to the last run's finish as
the database has them, so the workers' start-up (Django set-up, imports) is left out; the
wall time of the whole command, start-up included, is printed next to it. Each figure is
measured ``--repeat`` times and the median is shown.

It uses the test suite's settings and tasks (tests/settings.py, tests/testapp), which serve
the three databases: ``--db postgresql`` (the default; the server of tests/settings.py),
``mysql`` or ``sqlite``. It creates its own database (``test_taskmill_procbench``) and drops
it at the end. Run it from the repository root: ``python -m bench.processes --db postgresql``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = "_procbench"


@dataclass
class Drain:
    runs: int
    window: float  # first start to last finish, seconds
    wall: float  # the worker command, start-up included
    processes_seen: int  # distinct pids that ran tasks
    values: list  # the runs' return values

    @property
    def rate(self) -> float:
        return self.runs / self.window


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.processes", description=__doc__)
    parser.add_argument("--db", choices=["postgresql", "mysql", "sqlite"], default="postgresql")
    parser.add_argument("--runs", type=int, default=2000, help="runs per drain (default 2000)")
    parser.add_argument(
        "--task-ms", type=float, default=10.0, help="each task's duration (default 10)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="for the sleeping tasks (default 4)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="medians of this many (default 3)")
    parser.add_argument(
        "--only", choices=["cpu", "sleep"], action="append", help="one figure (repeatable)"
    )
    return parser.parse_args(argv)


def setup(db: str, suffix: str = SUFFIX) -> dict[str, str]:
    """Django on a fresh benchmark database (named with ``suffix``); the environment for
    worker processes."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["TASKMILL_TEST_DB"] = db
    os.environ["TASKMILL_TEST_DB_SUFFIX"] = suffix
    os.environ.pop("TASKMILL_TEST_DB_NAME", None)
    import django

    django.setup()
    from django.db import connection

    name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    env = dict(os.environ)
    env["TASKMILL_TEST_DB_NAME"] = name
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def teardown() -> None:
    from django.db import connection

    connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


def drain(env: dict[str, str], task, args: tuple, runs: int, worker_args: list[str]) -> Drain:
    from django.db import connection
    from django.db.models import Max, Min

    from taskmill.models import Run

    Run.objects.all().delete()
    task.enqueue_many([(args, {})] * runs)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE taskmill_run")
    command = [sys.executable, "-m", "django", "taskmill", "worker", "--burst", "--no-reload"]
    command += ["--no-scheduler", "--verbosity", "0", *worker_args]
    began = time.perf_counter()
    finished = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {finished.returncode}:\n{finished.stderr}")
    done = Run.objects.filter(status="SUCCESSFUL")
    count = done.count()
    if count != runs:
        raise SystemExit(f"only {count} of {runs} runs succeeded:\n{finished.stderr}")
    span = done.aggregate(first=Min("started_at"), last=Max("finished_at"))
    values = list(done.values_list("return_value", flat=True))
    pids = {value[0] if isinstance(value, list) else value for value in values}
    return Drain(runs, (span["last"] - span["first"]).total_seconds(), wall, len(pids), values)


def where_time_goes(drain: Drain, slots: int, task_ms: float) -> list[str]:
    """From sleep_ms's [pid, thread, start, end]: how the slots' time splits between the
    nominal sleep, the sleep's overshoot, the gaps between two tasks on one thread (short:
    the executor's own work per task; long: no run was there to take) and the start and
    end of the drain (threads starting at different times, the last batch)."""
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for pid, thread, start, end in drain.values:
        by_thread.setdefault((pid, thread), []).append((start, end))
    first = min(start for spans in by_thread.values() for start, _ in spans)
    last = max(end for spans in by_thread.values() for _, end in spans)
    total = (last - first) * slots
    nominal = drain.runs * task_ms / 1000
    ran = sum(end - start for spans in by_thread.values() for start, end in spans)
    gaps: list[float] = []
    edges = (slots - len(by_thread)) * (last - first)  # threads that never ran anything
    for spans in by_thread.values():
        spans.sort()
        edges += spans[0][0] - first + last - spans[-1][1]
        gaps += [after[0] - before[1] for before, after in itertools.pairwise(spans)]
    gaps.sort()
    short = sum(gap for gap in gaps if gap < 0.002)
    long = sum(gap for gap in gaps if gap >= 0.002)

    def share(seconds: float) -> str:
        return f"{seconds / total:6.1%}"

    quantile = lambda q: gaps[min(int(q * len(gaps)), len(gaps) - 1)] * 1000  # noqa: E731
    return [
        f"  where the slots' time went ({slots} slots x {last - first:.2f} s, tasks' clock):",
        f"    {share(nominal)}  the nominal {task_ms:g} ms sleeps",
        f"    {share(ran - nominal)}  sleeping longer than asked "
        f"(mean {ran / drain.runs * 1000:.2f} ms a task)",
        f"    {share(short)}  gaps < 2 ms between two tasks on a thread "
        f"({sum(gap < 0.002 for gap in gaps)} gaps: the executor's work per task)",
        f"    {share(long)}  gaps >= 2 ms ({sum(gap >= 0.002 for gap in gaps)} gaps: "
        "no claimed run to take)",
        f"    {share(edges)}  before a thread's first task and after its last",
        f"    gaps between tasks on a thread: median {quantile(0.5):.2f} ms, "
        f"p95 {quantile(0.95):.2f} ms, p99 {quantile(0.99):.2f} ms, max {gaps[-1] * 1000:.1f} ms",
    ]


def median_drain(drains: list[Drain]) -> Drain:
    return sorted(drains, key=lambda drain: drain.rate)[len(drains) // 2]


def describe(label: str, drains: list[Drain]) -> str:
    middle = median_drain(drains)
    rates = ", ".join(f"{drain.rate:,.0f}" for drain in drains)
    return (
        f"  {label:<38} {middle.rate:>8,.1f} runs/s  (window {middle.window:.2f} s, "
        f"wall {middle.wall:.2f} s, {middle.processes_seen} process(es); all: {rates})"
    )


def _autogroups() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    figures = options.only or ["cpu", "sleep"]
    env = setup(options.db)
    from django.db import connection

    from tests.testapp import process_tasks

    print(
        f"bench.processes: {options.db} ({connection.settings_dict['NAME']}), "
        f"{options.runs} runs of {options.task_ms:g} ms per drain, median of {options.repeat}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start"
    )
    if os.getloadavg()[0] > 1 and _autogroups():
        print(
            "  note: the machine is busy and the kernel shares CPU per session (autogroup): "
            "the worker processes of one session then share that session's slice, so the "
            "CPU figure shows the other sessions' load, not what a second process buys."
        )
    try:
        if "cpu" in figures:
            one, two = [], []
            for _ in range(options.repeat):
                # Alternated, so that a change in the machine's load hits both alike.
                for processes, drains in ((1, one), (2, two)):
                    drains.append(
                        drain(
                            env,
                            process_tasks.burn_cpu,
                            (options.task_ms,),
                            options.runs,
                            ["--processes", str(processes)],
                        )
                    )
            ratio = median_drain(two).rate / median_drain(one).rate
            print(f"CPU-bound tasks ({options.task_ms:g} ms of pure Python each), --concurrency 1:")
            print(describe("--processes 1", one))
            print(describe("--processes 2", two))
            print(f"  speed-up with 2 processes: {ratio:.2f}x (goal >= 1.7x)")
        if "sleep" in figures:
            sleeping = [
                drain(
                    env,
                    process_tasks.sleep_ms,
                    (options.task_ms,),
                    options.runs,
                    ["--concurrency", str(options.concurrency)],
                )
                for _ in range(options.repeat)
            ]
            ideal = options.concurrency * 1000 / options.task_ms
            share = median_drain(sleeping).rate / ideal
            print(f"Sleeping tasks ({options.task_ms:g} ms each), one process:")
            print(describe(f"--concurrency {options.concurrency}", sleeping))
            print(f"  {share:.1%} of the ideal {ideal:,.0f} runs/s (goal >= 90%)")
            for line in where_time_goes(
                median_drain(sleeping), options.concurrency, options.task_ms
            ):
                print(line)
    finally:
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
