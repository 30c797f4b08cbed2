"""Retention at volume on PostgreSQL (issue 25): does the runs table level off with the pruner
on? Prints figures, not a test.

    python -m bench.retention [--rate 400] [--ttl 240] [--minutes 15] [--workers 2]
    python -m bench.retention --quick            # about 2 minutes
    python -m bench.retention --storage reset    # the table's settings before migration 0014

A day of 10 million runs (116 a second) kept for a day holds 10 million finished runs: the
table's size is rate x time-to-live. This machine (2 shared cores) cannot play that day at
full size in minutes, so the day is compressed in time, the time-to-live with it: runs are
enqueued at ``--rate`` a second and kept ``--ttl`` seconds, a table of rate x ttl finished
runs in steady state, replaced whole every ``--ttl`` seconds as the real one is every day.
The periodic things are compressed in the same ratio (86,400 / ttl), floored at one second:
the pruner's interval (TASKMILL_PRUNE_INTERVAL, 60 s by default) and autovacuum's naptime
(60 s by default). What is not compressed: PostgreSQL's per-row costs, vacuum's cost limits,
and a smaller table (rate x ttl rows, not 10 million) vacuums faster than the real one.

In a database of its own (dropped at the end), on a PostgreSQL cluster of its own
(``bench.private_cluster``: autovacuum on, as in production; the shared server here runs
with it off) unless ``--shared-server``:

- ``--workers`` real ``taskmill worker`` processes drain no-op runs, their pruner on
  (TASKMILL_RESULT_TTL = ``--ttl``);
- an enqueuer process (this module with ``--enqueuer``) enqueues at a steady ``--rate``;
- this process samples every ``--interval`` seconds: runs enqueued and finished, the drain
  rate over the interval, the enqueue-to-start lag of the runs finished in it, the finished
  runs kept and those expired but not yet pruned, ``pg_total_relation_size`` of the runs
  table (and heap / indexes), ``n_live_tup``, ``n_dead_tup``, the share of HOT updates, and
  autovacuum's count and last time (``pg_stat_user_tables``);
- at the end, a verdict: the size and the dead tuples of the last third of the run against
  the middle third (the first is the filling), the drain rate against the enqueue rate, and
  the pruner's backlog.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from . import environment, private_cluster
from .retention_samples import HEADER, TABLE, Sample, row, row_versions, take_sample
from .scale_setup import configure_database, drop_database, process_env

DAY = 86_400
DAY_RUNS = 10_000_000  # the day: about 116 runs a second
# Defaults of the things compressed with the day (seconds).
PRUNE_INTERVAL = 60.0
NAPTIME = 60.0
# A third "levels off" when its mean is within this of the middle third's.
TOLERANCE = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--rate", type=float, help="runs enqueued a second (default 400)")
    parser.add_argument("--ttl", type=float, help="result time-to-live, seconds (default 240)")
    parser.add_argument("--minutes", type=float, help="length of the run (default 15)")
    parser.add_argument("--runs", type=int, help="runs to enqueue in all (sets --minutes)")
    parser.add_argument("--interval", type=float, help="seconds between samples (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=1, help="each worker's (default 1)")
    parser.add_argument("--prune-interval", type=float, help="default: 60 s compressed")
    parser.add_argument("--naptime", type=float, help="autovacuum's, default: 60 s compressed")
    parser.add_argument(
        "--storage",
        default="migrated",
        help="the runs table's storage parameters: 'migrated' (as the migrations leave them), "
        "'reset' (PostgreSQL's defaults, as before migration 0014), or 'name=value,...'",
    )
    parser.add_argument("--quick", action="store_true", help="about 2 minutes")
    parser.add_argument(
        "--shared-server",
        action="store_true",
        help="use the server of TASKMILL_BENCH_PG* instead of a private cluster",
    )
    parser.add_argument("--database", default="taskmill_retention")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--enqueuer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.rate = args.rate or (200.0 if quick else 400.0)
    args.ttl = args.ttl or (20.0 if quick else 240.0)
    args.interval = args.interval or (8.0 if quick else 30.0)
    if args.runs:
        args.minutes = args.runs / args.rate / 60
    args.minutes = args.minutes or (2.0 if quick else 15.0)
    args.seconds = args.seconds or args.minutes * 60
    compression = DAY / args.ttl
    args.prune_interval = args.prune_interval or max(1.0, PRUNE_INTERVAL / compression)
    args.naptime = args.naptime or max(1.0, NAPTIME / compression)
    return args


def describe(args: argparse.Namespace) -> None:
    compression = DAY / args.ttl
    steady = args.rate * args.ttl
    day_rate = DAY_RUNS / DAY
    print(
        f"# retention at volume: {args.rate:,.0f} runs/s kept {args.ttl:,.0f} s, "
        f"for {args.seconds / 60:,.1f} min ({args.rate * args.seconds:,.0f} runs)\n"
        f"represents: a day of {DAY_RUNS:,} runs ({day_rate:,.0f}/s) kept a day, compressed "
        f"{compression:,.0f}x in time (a ttl of {args.ttl:,.0f} s stands for the day), at "
        f"{args.rate / day_rate:,.1f}x its rate: a steady table of {steady:,.0f} finished runs "
        f"(1/{DAY_RUNS / steady:,.0f} of the day's), replaced every {args.ttl:,.0f} s\n"
        f"compressed with it: pruner every {args.prune_interval:g} s (60 s), autovacuum naptime "
        f"{args.naptime:g} s (60 s); floor 1 s"
    )
    if args.ttl > args.seconds / 3:
        print("warning: the ttl is over a third of the run: the middle third is not steady yet")


# -- the processes ---------------------------------------------------------------------------------


def write_settings(env: dict[str, str], args: argparse.Namespace) -> None:
    """A settings module on top of the bench's: the compressed time-to-live and pruner."""
    folder = Path(env["PYTHONPATH"].split(os.pathsep)[0])  # configure_database's own
    module = "bench_retention_settings"
    (folder / f"{module}.py").write_text(
        f"from {environment.SETTINGS} import *  # noqa: F403\n"
        f"TASKMILL_RESULT_TTL = {args.ttl!r}\n"
        f"TASKMILL_PRUNE_INTERVAL = {args.prune_interval!r}\n"
    )
    environment.SETTINGS = module
    env["DJANGO_SETTINGS_MODULE"] = module


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=environment.REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def start_workers(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> list:
    cmd = [sys.executable, "-m", "django", "taskmill", "worker", "--no-reload", "--no-scheduler"]
    cmd += ["--concurrency", str(args.concurrency)]
    return [
        start([*cmd, "--label", f"retention{i}"], env, logdir / f"worker{i}.log")
        for i in range(args.workers)
    ]


def enqueue_steadily(rate: float, seconds: float) -> None:
    """The enqueuer process: ``rate`` runs a second for ``seconds``, one bulk insert every
    tenth of a second (catching up, up to 5,000 at a time, if the machine held it back)."""
    import django

    django.setup()
    from bench.tasks import noop

    began = time.monotonic()
    done = 0
    while (elapsed := time.monotonic() - began) < seconds:
        due = min(int(rate * elapsed) - done, 5000)
        if due > 0:
            noop.enqueue_many([((), {})] * due)
            done += due
        time.sleep(max(0.0, 0.1 - (time.monotonic() - began - elapsed)))
    print(f"enqueued {done} in {time.monotonic() - began:.1f} s", flush=True)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_alive(processes: list[subprocess.Popen[bytes]], logdir: Path) -> None:
    dead = [p.args for p in processes if p.poll() is not None and p.returncode]
    if dead:
        raise SystemExit(f"a process died: {dead}; logs in {logdir}")


def wait_for(sql: str, processes: list[subprocess.Popen[bytes]], logdir: Path) -> None:
    """Poll ``sql`` (one boolean) until it holds, for at most two minutes."""
    from django.db import connection

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        check_alive(processes, logdir)
        with connection.cursor() as cursor:
            cursor.execute(sql)
            if cursor.fetchone()[0]:
                return
        time.sleep(0.2)
    raise SystemExit(f"not so after two minutes: {sql}; logs in {logdir}")


# -- the table's storage parameters -------------------------------------------------------------


def migration_parameters() -> dict[str, str]:
    """What migration 0014 sets (empty before it exists)."""
    import importlib

    try:
        module = importlib.import_module("taskmill.migrations.0014_run_storage")
    except ImportError:
        return {}
    return dict(module.PARAMETERS)


def apply_storage(mode: str) -> str:
    """Set the runs table's storage parameters as ``mode`` says; return its reloptions."""
    from django.db import connection

    with connection.cursor() as cursor:
        if mode == "reset":
            names = set(migration_parameters()) | {"fillfactor"}
            cursor.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(sorted(names))})")
        elif mode != "migrated":
            pairs = [pair.strip() for pair in mode.split(",") if pair.strip()]
            if not all(re.fullmatch(r"[a-z_]+=[0-9.]+", pair) for pair in pairs):
                raise SystemExit(f"--storage: name=value pairs, not {mode!r}")
            cursor.execute(f"ALTER TABLE {TABLE} SET ({', '.join(pairs)})")
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [TABLE])
        (options,) = cursor.fetchone()
    return ", ".join(options or []) or "PostgreSQL's defaults"


# -- the verdict --------------------------------------------------------------------------------


def vacuum_trigger(live: float) -> float:
    """The dead tuples at which autovacuum comes to the runs table: its threshold plus its
    scale factor times ``live``, the table's own where set, else the server's."""
    from django.db import connection

    def option(name: str) -> str:
        return (
            f"coalesce((SELECT option_value FROM pg_options_to_table(c.reloptions) "
            f"WHERE option_name = '{name}'), current_setting('{name}'))::float"
        )

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {option('autovacuum_vacuum_threshold')}, "
            f"{option('autovacuum_vacuum_scale_factor')} FROM pg_class c WHERE relname = %s",
            [TABLE],
        )
        threshold, scale = cursor.fetchone()
    return threshold + scale * live


def thirds(samples: list[Sample], seconds: float) -> tuple[list[Sample], list[Sample]]:
    middle = [s for s in samples if seconds / 3 < s.elapsed <= 2 * seconds / 3]
    last = [s for s in samples if s.elapsed > 2 * seconds / 3]
    return middle, last


def verdict(samples: list[Sample], args: argparse.Namespace) -> list[str]:
    middle, last = thirds(samples, args.seconds)
    if len(middle) < 2 or len(last) < 2:
        return ["no verdict: too few samples in the middle and last thirds"]
    lines = []
    level = True
    # Dead tuples are a sawtooth from 0 to where autovacuum comes: two thirds' means may
    # differ by half of it (and a naptime's worth) with nothing growing.
    sawtooth = vacuum_trigger(mean(s.live for s in last)) / 2 + args.rate * args.naptime
    for label, value, slack in (
        ("total size, MB", lambda s: s.total / 1024 / 1024, 0.0),
        ("heap, MB", lambda s: s.heap / 1024 / 1024, 0.0),
        ("n_dead_tup", lambda s: s.dead, sawtooth),
        ("finished runs kept", lambda s: s.kept, args.rate * args.prune_interval),
    ):
        m, la = mean(value(s) for s in middle), mean(value(s) for s in last)
        ok = la <= m * (1 + TOLERANCE) + slack
        level &= ok
        lines.append(
            f"{label:<20} middle third {m:>12,.1f}  last third {la:>12,.1f}  "
            f"({(la / m - 1) * 100 if m else 0:+.0f}%)  {'levels off' if ok else 'GROWS'}"
        )
    # A plateau reached late in the middle third (a drain backlog caught up, say) reads as
    # growth between the thirds: within the last third alone, is it still growing?
    first, end = last[0].total, last[-1].total
    lines.append(
        f"total size within the last third: {first / 1024 / 1024:,.1f} -> "
        f"{end / 1024 / 1024:,.1f} MB ({(end / first - 1) * 100:+.0f}%)"
    )
    drains = [s.drain for s in last if s.drain is not None]
    kept_up = bool(drains) and mean(drains) >= 0.95 * args.rate
    backlog = mean(s.expired for s in last)
    pruner_ok = backlog <= args.rate * max(10.0, 3 * args.prune_interval)
    lines.append(
        f"drain, last third: {mean(drains):,.0f} runs/s for {args.rate:,.0f} enqueued/s: "
        f"{'keeps up' if kept_up else 'FALLS BEHIND'}"
    )
    lines.append(
        f"pruner backlog, last third: {backlog:,.0f} expired runs on average "
        f"({backlog / args.rate:.1f} s of runs): {'keeps up' if pruner_ok else 'FALLS BEHIND'}"
    )
    settled = level and kept_up and pruner_ok
    lines.append(f"verdict: {'levels off' if settled else 'does NOT level off'}")
    return lines


def autovacuum_log(cluster: private_cluster.Cluster | None) -> str:
    """How many automatic vacuums of the runs table the server logged, and the longest."""
    if cluster is None or not cluster.log.exists():
        return "autovacuum log: not available (shared server)"
    text = cluster.log.read_text(errors="replace")
    pattern = rf'automatic vacuum of table "[^"]*\.{TABLE}":(.*?)elapsed: ([0-9.]+) s'
    runs = re.findall(pattern, text, re.S)
    if not runs:
        return "autovacuum log: no automatic vacuum of the runs table"
    longest = max(float(seconds) for _, seconds in runs)
    return f"autovacuum log: {len(runs)} automatic vacuums of {TABLE}, longest {longest:.2f} s"


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.enqueuer:
        enqueue_steadily(args.rate, args.seconds)
        return
    cluster = None
    if not args.shared_server:
        cluster = private_cluster.start(
            {"autovacuum_naptime": f"{args.naptime:g}s", "log_autovacuum_min_duration": "0"}
        )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env = process_env(configure_database("postgresql", args.database))
        write_settings(env, args)
        environment.setup_django()
        try:
            run(args, env, cluster, processes)
        finally:
            stop(processes)
            if not args.keep_database:
                drop_database("postgresql", args.database)
    finally:
        if cluster is not None:
            cluster.stop()


def run(
    args: argparse.Namespace,
    env: dict[str, str],
    cluster: private_cluster.Cluster | None,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    from django.db import connection

    describe(args)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), current_setting('autovacuum')")
        version, autovacuum = cursor.fetchone()
    where = f"private cluster on port {cluster.port}" if cluster else "shared server"
    print(f"server: {version.split(' on ')[0]}, {where}, autovacuum {autovacuum}")
    if autovacuum != "on":
        print("warning: autovacuum is off on this server: nothing reclaims dead tuples")
    print(f"runs table storage: {apply_storage(args.storage)}")
    logdir = Path(tempfile.mkdtemp(prefix="taskmill-retention-"))
    print(
        f"taskmill {environment.git_head()}; {args.workers} worker(s) x concurrency "
        f"{args.concurrency}; cores {os.cpu_count()}; load {environment.loadavg()}; "
        f"logs {logdir}",
        flush=True,
    )
    processes += start_workers(args, env, logdir)
    # The clock starts once the workers are up and the first runs are in: Django's start-up
    # on a loaded machine takes seconds, and must not count as a backlog.
    wait_for(f"SELECT count(*) >= {args.workers} FROM taskmill_worker", processes, logdir)
    enqueuer = [sys.executable, "-m", "bench.retention", "--enqueuer"]
    enqueuer += ["--rate", str(args.rate), "--seconds", str(args.seconds)]
    processes.append(start(enqueuer, env, logdir / "enqueuer.log"))
    wait_for("SELECT is_called FROM taskmill_run_id_seq", processes, logdir)
    began = time.monotonic()
    print(HEADER)
    samples: list[Sample] = []
    deadline = began
    while (deadline := deadline + args.interval) <= began + args.seconds + 0.5:
        time.sleep(max(0.0, deadline - time.monotonic()))
        check_alive(processes, logdir)
        previous = samples[-1] if samples else None
        samples.append(take_sample(time.monotonic() - began, previous))
        print(row(samples[-1], previous), flush=True)
    print()
    for line in verdict(samples, args):
        print(line)
    print(row_versions())
    print(autovacuum_log(cluster))
    print(f"load at the end: {environment.loadavg()}")


if __name__ == "__main__":
    main()
