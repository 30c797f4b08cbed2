"""The scheduler at scale: many schedules, a few due each second; prints figures, not a test.

    python -m bench.scheduler_scale --db postgresql [--schedules 100000 --due-per-second 1000
                                                     --seconds 30 --schedulers 1]

In a fresh database of its own it bulk-creates ``--due-per-second`` schedules that fire every
second (half an interval of 1 s, half the cron ``* * * * * *``) and enough far-future ones to
make ``--schedules`` in all, then:

1. the tick's cost with few and with many schedules not due: statements and time of the ticks
   that fire one second's worth of due schedules, and of an empty tick, measured in this
   process, first with 1,000 schedules not due, then with all of them; and the EXPLAIN of the
   due-schedules query (it must read the next-fire-time index, never the table);
2. a live run: ``--schedulers`` real ``taskmill scheduler`` processes for ``--seconds``; for
   every fire, enqueued_at - fire time (the scheduler's clock when its tick began), and on
   PostgreSQL also the moment the run became visible to another session (read on each NOTIFY
   the fire's commit sends) - fire time; fires per second; missing, doubled and unexpected
   fires (all must be 0); the scheduler processes' CPU; the load average.

``--db mysql`` (MariaDB) and ``--db sqlite`` (a WAL file) work too; say which counts you used.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import environment
from .scale_schedules import create_schedules, delete_runs, pause_overdue, set_due_at, unpause
from .scale_setup import (
    analyze,
    compiled,
    configure_database,
    drop_database,
    explain,
    loadavg,
    process_env,
)

# -- 1. the tick's cost -------------------------------------------------------------------------


def measure_tick(due: int, repeats: int) -> dict[str, Any]:
    """Fire ``due`` due schedules tick by tick, ``repeats`` times; then an empty tick."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from taskmill.scheduler import firing

    busy: list[tuple[int, float, int]] = []
    for _ in range(repeats):
        delete_runs()
        now = datetime.now(UTC).replace(microsecond=0)
        set_due_at(now)  # one fire time each, ``now`` itself
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            fired = 0
            while True:
                result = firing.tick(now=now)
                fired += result.runs
                if result.schedules < firing.BATCH_SIZE:
                    break
            elapsed = time.perf_counter() - started
        assert fired == due, f"fired {fired} of {due}"
        busy.append((len(queries), elapsed, fired))
    idle: list[tuple[int, float]] = []
    set_due_at(datetime.now(UTC) + timedelta(days=1))  # nothing due: the tick's fixed cost
    for _ in range(max(repeats, 5)):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            firing.tick()
            firing.next_due_at("default", datetime.now(UTC))
            idle.append((len(queries), time.perf_counter() - started))
    delete_runs()
    return {
        "statements": statistics.median(b[0] for b in busy),
        "seconds": statistics.median(b[1] for b in busy),
        "idle_statements": statistics.median(i[0] for i in idle),
        "idle_ms": statistics.median(i[1] for i in idle) * 1000,
    }


def due_query_plans() -> str:
    from django.db import transaction

    from taskmill.scheduler import firing

    now = datetime.now(UTC)
    set_due_at(now - timedelta(seconds=1))
    with transaction.atomic():
        query = firing.due_schedules("default", now)
        from django.db import connection

        if connection.features.has_select_for_update_skip_locked:
            query = query.select_for_update(skip_locked=True)
        due_sql = compiled(query[: firing.BATCH_SIZE])
    next_sql = compiled(
        firing.Schedule.objects.filter(enabled=True, paused=False, next_fire_at__gt=now)
        .order_by("next_fire_at")
        .values_list("next_fire_at", flat=True)[:1]
    )
    return (
        f"-- due schedules (the tick):\n{explain(*due_sql)}\n"
        f"-- next fire time (the sleep):\n{explain(*next_sql)}"
    )


# -- 2. the live run ----------------------------------------------------------------------------


class Visibility(threading.Thread):
    """PostgreSQL: when each fire's run became visible to another session.

    The fire's transaction sends a NOTIFY that is delivered at its commit; on each, the runs
    not seen before are read and stamped with the time of the notification."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.seen: dict[int, float] = {}
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        import psycopg

        params = environment.server_params()
        with (
            psycopg.connect(
                dbname=os.environ["TASKMILL_BENCH_DB"], autocommit=True, **params
            ) as listen,
            psycopg.connect(
                dbname=os.environ["TASKMILL_BENCH_DB"], autocommit=True, **params
            ) as read,
        ):
            listen.execute("LISTEN taskmill")
            self.ready.set()
            floor = 0
            while not self.stopping.is_set():
                for _ in listen.notifies(timeout=0.2, stop_after=1):
                    stamp = time.time()
                    # Ids are taken at insert, commits land in any order: read a margin back.
                    rows = read.execute(
                        "SELECT id FROM taskmill_run WHERE id > %s AND schedule_id IS NOT NULL",
                        [max(floor - 20000, 0)],
                    ).fetchall()
                    for (run_id,) in rows:
                        self.seen.setdefault(run_id, stamp)
                        floor = max(floor, run_id)


class MaxIdPoller(threading.Thread):
    """MySQL, SQLite (no NOTIFY): when each fire's run became visible, as the first poll (every
    ``interval`` s) whose ``max(id)`` covers it. Exact for one scheduler process, whose
    transactions commit in id order; with several, a run may be stamped a little early."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.interval = interval
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                self.ready.set()
                while not self.stopping.is_set():
                    cursor.execute("SELECT max(id) FROM taskmill_run")
                    self.samples.append((time.time(), cursor.fetchone()[0] or 0))
                    self.stopping.wait(self.interval)
        finally:
            connection.close()

    @property
    def seen(self) -> dict[int, float]:
        return _FirstCovering(self.samples)


class _FirstCovering(dict):
    def __init__(self, samples: list[tuple[float, int]]) -> None:
        super().__init__()
        self._samples = samples

    def __contains__(self, run_id: object) -> bool:
        return bool(self._samples) and self._samples[-1][1] >= run_id  # type: ignore[operator]

    def __getitem__(self, run_id: int) -> float:
        import bisect

        position = bisect.bisect_left([top for _, top in self._samples], run_id)
        return self._samples[position][0]


class SchedulerProcess:
    def __init__(self, env: dict[str, str], logdir: Path, number: int, batch: int | None) -> None:
        self.log_path = logdir / f"scheduler-{number}.log"
        self._log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "django", "taskmill", "scheduler", "--no-sync"]
        if batch:
            cmd += ["--batch-size", str(batch)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=environment.REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def cpu_seconds(self) -> float:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-1500:]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {percentile(values, 0.50):7.1f}  p95 {percentile(values, 0.95):7.1f}  "
        f"p99 {percentile(values, 0.99):7.1f}  max {max(values):7.1f} ms  (n={len(values)})"
    )


def live_run(args: argparse.Namespace, env: dict[str, str], logdir: Path) -> dict[str, Any]:
    from django.db import connection
    from django.db.models import Count

    from taskmill.models import Run, Schedule

    delete_runs()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.lead_in)
    set_due_at(start)
    end = start + timedelta(seconds=args.seconds)  # fire times in [start, end) are counted
    visibility: Any = Visibility() if connection.vendor == "postgresql" else MaxIdPoller()
    visibility.start()
    visibility.ready.wait(10)
    processes = [
        SchedulerProcess(env, logdir, number, args.batch_size) for number in range(args.schedulers)
    ]
    loads: list[str] = []
    try:
        while datetime.now(UTC) < end + timedelta(seconds=2):
            time.sleep(1)
            for process in processes:
                if process.proc.poll() is not None:
                    raise SystemExit(f"a scheduler exited early:\n{process.tail()}")
            if datetime.now(UTC) > start:
                loads.append(loadavg())
        cpu = [process.cpu_seconds() for process in processes]
    finally:
        for process in processes:
            process.stop()
        visibility.stopping.set()
        visibility.join(5)
    expected = args.due_per_second * args.seconds
    window = Run.objects.filter(
        schedule__isnull=False, scheduled_for__gte=start, scheduled_for__lt=end
    )
    rows = list(window.values_list("id", "schedule_id", "scheduled_for", "enqueued_at"))
    pairs = {(schedule, fire) for _, schedule, fire, _ in rows}
    doubled = (
        Run.objects.filter(schedule__isnull=False)
        .values("schedule_id", "scheduled_for")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    wrong_times = sum(1 for _, _, fire, _ in rows if fire.microsecond)
    due_ids = set(Schedule.objects.filter(name__startswith="due-").values_list("id", flat=True))
    missing = sum(
        1
        for schedule in due_ids
        for second in range(args.seconds)
        if (schedule, start + timedelta(seconds=second)) not in pairs
    )
    stray = Run.objects.filter(schedule__name__startswith="idle-").count()
    lateness = [(enqueued - fire).total_seconds() * 1000 for _, _, fire, enqueued in rows]
    visible: list[float] = []
    seen = visibility.seen
    for run_id, _, fire, _ in rows:
        if run_id in seen:
            visible.append((seen[run_id] - fire.timestamp()) * 1000)
    # The fire times whose slowest fire was visible more than 100 ms late.
    worst: dict[datetime, float] = {}
    for run_id, _, fire, _ in rows:
        if run_id in seen:
            late = (seen[run_id] - fire.timestamp()) * 1000
            worst[fire] = max(worst.get(fire, 0.0), late)
    late_seconds = [
        f"+{(fire - start).total_seconds():.0f}s: {ms:.0f} ms"
        for fire, ms in sorted(worst.items())
        if ms > 100
    ]
    per_second: dict[int, int] = {}
    for *_, enqueued in rows:
        per_second[int(enqueued.timestamp())] = per_second.get(int(enqueued.timestamp()), 0) + 1
    busiest = sorted(per_second.values())
    return {
        "expected": expected,
        "fired": len(rows),
        "missing": missing,
        "doubled": doubled,
        "wrong_times": wrong_times,
        "stray": stray,
        "lateness": lateness,
        "visible": visible,
        "visible_missed": len(rows) - len(visible),
        "late_seconds": late_seconds,
        "visible_how": "NOTIFY" if isinstance(visibility, Visibility) else "max(id) poll, 5 ms",
        "per_second_median": statistics.median(busiest) if busiest else 0,
        "cpu": cpu,
        "loads": loads,
    }


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler_scale", description=__doc__)
    parser.add_argument("--db", choices=["postgresql", "mysql", "sqlite"], default="postgresql")
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--due-per-second", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--schedulers", type=int, default=1, help="scheduler processes (live run)")
    parser.add_argument("--batch-size", type=int, default=None, help="scheduler --batch-size")
    parser.add_argument("--lead-in", type=int, default=5, help="seconds before the first fire")
    parser.add_argument("--repeat", type=int, default=3, help="tick-cost measurements (median)")
    parser.add_argument("--database", default="taskmill_sched_scale")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument(
        "--paused",
        type=int,
        default=0,
        help="also measure the tick with this many of the others paused while due",
    )
    args = parser.parse_args(argv)
    if args.schedules < args.due_per_second + 1000:
        parser.error("--schedules must be at least --due-per-second + 1000")

    env = configure_database(args.db, args.database)
    environment.setup_django()
    from django.db import connection

    from taskmill.scheduler import firing

    logdir = Path(tempfile.mkdtemp(prefix="taskmill-sched-scale-"))
    print(f"# scheduler at scale on {connection.vendor} ({connection.display_name})")
    print(
        f"taskmill: {environment.REPO} {environment.git_head()}; cores: {os.cpu_count()}; "
        f"load at start: {loadavg()}; logs: {logdir}"
    )
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        created = time.perf_counter()
        create_schedules(0, args.due_per_second, due=True, fire_at=now)
        create_schedules(0, 1000, due=False, fire_at=now)
        analyze("taskmill_schedule")
        few = measure_tick(args.due_per_second, args.repeat)
        plans_few = due_query_plans()
        rest = args.schedules - args.due_per_second - 1000
        create_schedules(1000, rest, due=False, fire_at=now)
        analyze("taskmill_schedule")
        print(
            f"created {args.schedules:,} schedules in {time.perf_counter() - created:.1f}s "
            f"(bulk), {args.due_per_second:,} due each second, the rest in ten years"
        )
        many = measure_tick(args.due_per_second, args.repeat)
        plans_many = due_query_plans()
        rows = [(f"{1000:,}", few), (f"{args.schedules - args.due_per_second:,}", many)]
        plans_paused = ""
        if args.paused:
            # Paused by an operator while due: they keep their (past) next fire time.
            pause_overdue(args.paused, now)
            analyze("taskmill_schedule")
            rows.append((f"{args.paused:,} paused", measure_tick(args.due_per_second, args.repeat)))
            plans_paused = due_query_plans()
            unpause(now)
        print(
            f"\n## 1. the tick's cost (in this process, batch {firing.BATCH_SIZE}, "
            f"median of {args.repeat}; load {loadavg()})"
        )
        print(
            f"{'not due':>10} | fire {args.due_per_second} due: statements, seconds | "
            "empty tick + next-fire read: statements, ms"
        )
        for label, figures in rows:
            print(
                f"{label:>10} | {figures['statements']:>10.0f} {figures['seconds']:>10.3f} s | "
                f"{figures['idle_statements']:>10.0f} {figures['idle_ms']:>8.2f} ms"
            )
        print(f"\nplans with 1,000 not due:\n{plans_few}")
        print(f"\nplans with {args.schedules - args.due_per_second:,} not due:\n{plans_many}")
        if plans_paused:
            print(f"\nplans with {args.paused:,} of them paused while due:\n{plans_paused}")
        if args.skip_live:
            return
        print(
            f"\n## 2. live run: {args.schedulers} scheduler process(es), "
            f"{args.due_per_second:,} fires/s for {args.seconds}s, {args.schedules:,} schedules"
        )
        figures = live_run(args, process_env(env), logdir)
        print(
            f"fires expected {figures['expected']:,}, enqueued {figures['fired']:,}; "
            f"missing {figures['missing']}, doubled {figures['doubled']}, "
            f"off-second {figures['wrong_times']}, from far-future schedules "
            f"{figures['stray']}"
        )
        print(f"enqueued_at - fire time:   {describe(figures['lateness'])}")
        print(
            f"visible (commit) - fire:   {describe(figures['visible'])}"
            f"  [{figures['visible_how']}; not stamped: {figures['visible_missed']}]"
        )
        print(
            f"fire times visible more than 100 ms late (of {args.seconds}): "
            f"{', '.join(figures['late_seconds']) or 'none'}"
        )
        print(
            f"fires per second (median over the seconds of enqueued_at): "
            f"{figures['per_second_median']:,.0f}"
        )
        cpu = ", ".join(f"{c:.1f}" for c in figures["cpu"])
        print(f"scheduler CPU seconds (whole process life, incl. start-up): {cpu}")
        print(
            f"load average during the run (1/5/15 min, each second): "
            f"first {figures['loads'][0]}, last {figures['loads'][-1]}"
        )
    finally:
        if not args.keep_database:
            drop_database(args.db, args.database)


if __name__ == "__main__":
    main()
