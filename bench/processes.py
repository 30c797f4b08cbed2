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


def setup(db: str) -> dict[str, str]:
    """Django on a fresh benchmark database; the environment for worker processes."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["TASKMILL_TEST_DB"] = db
    os.environ["TASKMILL_TEST_DB_SUFFIX"] = SUFFIX
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
    pids = set(done.values_list("return_value", flat=True))
    return Drain(runs, (span["last"] - span["first"]).total_seconds(), wall, len(pids))


def median_drain(drains: list[Drain]) -> Drain:
    return sorted(drains, key=lambda drain: drain.rate)[len(drains) // 2]


def describe(label: str, drains: list[Drain]) -> str:
    middle = median_drain(drains)
    rates = ", ".join(f"{drain.rate:,.0f}" for drain in drains)
    return (
        f"  {label:<38} {middle.rate:>8,.1f} runs/s  (window {middle.window:.2f} s, "
        f"wall {middle.wall:.2f} s, {middle.processes_seen} process(es); all: {rates})"
    )


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
    finally:
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
