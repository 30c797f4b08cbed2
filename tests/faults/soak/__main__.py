"""The chaos soak: real workers, a producer, a seeded chaos loop, then a checker.

    python -m tests.faults.soak --db postgresql [--profile ci|long] [--seed N]

(``scripts/soak`` sets up the virtualenv and runs it for every database.) It starts a
private database server (PostgreSQL, MariaDB; SQLite needs none), creates and migrates a
database, starts the workers (each with its scheduler), creates per-second schedules,
enqueues a mix of every kind of run (some under limits) while the chaos loop kills, stops,
freezes, restarts and cancels and a watch reads the limits' slots, lets everything settle,
stops the workers, and checks. It prints one table and exits 1 unless nothing was lost,
doubled, missed, fired twice, stuck or wrong, and no limit was exceeded or slot leaked.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def parse_args(argv: list[str]) -> argparse.Namespace:
    from .profiles import PROFILES

    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "mysql"], required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (printed at start)")
    parser.add_argument("--seconds", type=float, default=None, help="chaos time (overrides)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def create_database(vendor: str, server, work: Path) -> str:
    """A fresh database on the private server (a file for SQLite); returns its NAME."""
    if vendor == "sqlite":
        return str(work / "soak.sqlite3")
    name = "taskmill_soak"
    if vendor == "postgresql":
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    else:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=server.port, user="root")
        conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        conn.close()
    return name


def prepare_environment(vendor: str, server, name: str, record_dir: Path) -> dict[str, str]:
    from .profiles import WORKER_ENV

    env = {
        **server.env(),
        "DJANGO_SETTINGS_MODULE": "tests.faults.soak.settings",
        "TASKMILL_TEST_DB": vendor,
        "TASKMILL_TEST_DB_NAME": name,
        "TASKMILL_TEST_RECORD_DIR": str(record_dir),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)  # this process's Django talks to the same database
    return {**os.environ, **WORKER_ENV}


def main(argv: list[str]) -> int:
    from .profiles import PROFILES
    from .servers import server_for

    args = parse_args(argv)
    # A SIGTERM (a CI timeout, a kill) unwinds like Ctrl-C: workers and server are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    profile = PROFILES[args.profile]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    chaos_seconds = args.seconds or profile.chaos_seconds
    print(
        f"soak: database={args.db} profile={profile.name} seed={seed} chaos={chaos_seconds:g}s "
        f"(replay: python -m tests.faults.soak --db {args.db} --profile {profile.name} "
        f"--seed {seed})",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix=f"taskmill-soak-{args.db}-"))
    record_dir = work / "records"
    record_dir.mkdir()
    server = server_for(args.db)
    server.start()
    failed = True
    try:
        name = create_database(args.db, server, work)
        worker_env = prepare_environment(args.db, server, name, record_dir)
        code = soak(args.db, profile, seed, chaos_seconds, server, worker_env, work)
        failed = code != 0
        return code
    finally:
        server.stop()
        if args.keep or failed:
            print(f"soak: work folder kept: {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def soak(vendor, profile, seed, chaos_seconds, server, worker_env, work: Path) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    from .chaos import Fleet

    call_command("migrate", verbosity=0, run_syncdb=True)
    fleet = Fleet(profile.workers[vendor], worker_env, work / "workers")
    try:
        return run_fleet(vendor, profile, seed, chaos_seconds, server, fleet, work)
    except BaseException:
        fleet.thaw_all()
        fleet.kill_all()
        raise


def run_fleet(vendor, profile, seed, chaos_seconds, server, fleet, work: Path) -> int:
    from django.db import connection
    from django.utils import timezone

    from .chaos import Chaos
    from .checker import check, check_leftovers
    from .producer import Producer, create_schedules, with_database_retries
    from .report import print_table
    from .watch import Watcher, watching

    rng = random.Random(seed)
    fleet.fill()
    for worker in list(fleet.live):
        worker.wait_for_output("started", timeout=60)

    began = time.monotonic()
    start = (timezone.now() + timedelta(seconds=2)).replace(microsecond=0)
    end = start + timedelta(seconds=int(chaos_seconds))
    schedules = create_schedules(start, end)
    producer = Producer(random.Random(rng.random()), profile.enqueue_per_second)
    chaos = Chaos(
        random.Random(rng.random()), fleet, server, producer, profile.chaos_every,
        work / "events.log",
    )  # fmt: skip
    watcher = Watcher()
    watch_thread, stop_watching = watching(watcher)
    stop = threading.Event()
    until = began + 2 + chaos_seconds
    threads = [
        threading.Thread(target=producer.run, args=(until, stop), name="producer"),
        threading.Thread(target=chaos.run, args=(until, stop), name="chaos"),
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:  # interrupted: no new worker may start after the fleet is killed
        stop.set()
        stop_watching.set()
        for thread in threads:
            thread.join(timeout=60)
        raise
    chaos.finish()
    fleet.fill()
    for worker in list(fleet.live):  # a replacement still booting would die of SIGTERM
        worker.wait_for_output("started", timeout=60)

    settled = wait_for_quiet(profile.settle_seconds, with_database_retries)
    stop_watching.set()
    watch_thread.join(timeout=60)
    stop_problems = fleet.stop_all()
    connection.close()
    report = with_database_retries(
        lambda: check(
            work / "records",
            producer.enqueued,
            chaos.targeted,
            schedules,
            watcher.watch,
            chaos.disrupted,
        )
    )
    check_leftovers(report, work / "records")
    for problem in stop_problems:
        report.flag("stuck", problem)
    if not settled:
        report.problems.append(f"no run ended for {profile.settle_seconds:g}s while some were left")
    print_table(vendor, profile.name, seed, time.monotonic() - began, report, chaos, producer)
    if not report.ok:
        (work / "problems.txt").write_text("".join(f"{line}\n" for line in report.problems))
        outputs = work / "workers"
        outputs.mkdir(exist_ok=True)
        for worker in fleet.live + fleet.retired:
            (outputs / f"{worker.process.pid}.out").write_text(worker.output)
        print(
            f"soak: FAILED; replay with --seed {seed}; every problem: {work / 'problems.txt'}; "
            f"chaos events: {work / 'events.log'}, "
            f"worker outputs: {outputs}, side-effect logs: {work / 'records'}"
        )
    return 0 if report.ok else 1


def wait_for_quiet(seconds: float, retrying) -> bool:
    """Wait until no run is READY, WAITING or RUNNING and every schedule reached its end.

    A backlog is not a fault (two SQLite workers drain slower than the producer enqueues on a
    loaded machine): wait as long as the runs left keep going down; give up only after
    ``seconds`` without progress. What is left then is stuck.
    """
    from taskmill.models import Run, Schedule

    def left() -> int:
        return retrying(
            lambda: (
                Run.objects.filter(status__in=["READY", "WAITING", "RUNNING"]).count()
                + Schedule.objects.filter(
                    name__startswith="soak-", next_fire_at__isnull=False
                ).count()
            )
        )

    best, last_progress = left(), time.monotonic()
    while best:
        time.sleep(0.5)
        now_left = left()
        if now_left < best:
            best, last_progress = now_left, time.monotonic()
        elif time.monotonic() - last_progress > seconds:
            return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
