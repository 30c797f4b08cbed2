"""The worker's hot path with millions of finished runs kept: prints figures, not a test.

    python -m bench.big_table --db postgresql --finished 10000000 [--drain 20000]

In a fresh database of its own, twice: with no finished run, then with ``--finished`` of them
(written server-side: ``INSERT ... SELECT`` over ``generate_series`` on PostgreSQL, a
recursive CTE on MariaDB and SQLite), after ``ANALYZE``:

1. the plans of the claim, the finish and the heartbeat (lease renewal), as the engine
   (``taskmill.db``) runs them: its own methods are called and each statement they send is
   EXPLAINed (PostgreSQL: ``EXPLAIN (ANALYZE, BUFFERS)``, rolled back) before it runs;
2. the drain rate of ``--drain`` no-op runs by one ``taskmill worker --burst --concurrency 1``.

Then the ratio of the two drain rates: 1.0 is "cost independent of the rows kept".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import environment
from .scale_setup import analyze, configure_database, drop_database, process_env

LIVE_TABLES = ("taskmill_run",)


# -- filling the table ---------------------------------------------------------------------------


def fill_finished(count: int, chunk: int) -> float:
    """Insert ``count`` finished runs server-side, ``chunk`` per statement; return seconds."""
    from django.db import connection

    from taskmill.models import Run

    if count <= 0:
        return 0.0
    vendor = connection.vendor
    # Every column the model stores, each with an expression of the row number ``n``. A mix
    # of final states, finished over the last 30 days, as a busy system keeps them.
    values = finished_row_expressions(vendor)
    fields = [f for f in Run._meta.concrete_fields if not f.primary_key and not f.generated]
    missing = [f.column for f in fields if f.column not in values and not f.null]
    if missing:
        raise SystemExit(f"bench.big_table: no value for the NOT NULL column(s) {missing}")
    columns = [f.column for f in fields if f.column in values]
    # The expressions hold % (modulo, strftime): doubled, since the statement has parameters.
    select = ", ".join(values[column] for column in columns).replace("%", "%%")
    insert = f"INSERT INTO {Run._meta.db_table} ({', '.join(columns)}) "
    started = time.perf_counter()
    with connection.cursor() as cursor:
        done = 0
        while done < count:
            size = min(chunk, count - done)
            if vendor == "postgresql":
                cursor.execute(
                    f"{insert} SELECT {select} FROM generate_series(%s, %s) AS s(n)",
                    [done + 1, done + size],
                )
            else:
                if vendor == "mysql":  # the recursion's bound, MariaDB's name and MySQL's
                    variable = (
                        "max_recursive_iterations"
                        if connection.mysql_is_mariadb
                        else "cte_max_recursion_depth"
                    )
                    cursor.execute(f"SET SESSION {variable} = {size + 1}")
                cursor.execute(
                    f"{insert} WITH RECURSIVE s(n) AS (SELECT %s UNION ALL "
                    f"SELECT n + 1 FROM s WHERE n < %s) SELECT {select} FROM s",
                    [done + 1, done + size],
                )
            done += size
            print(
                f"  {done:,} finished runs written ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
    return time.perf_counter() - started


def finished_row_expressions(vendor: str) -> dict[str, str]:
    """Column -> SQL expression of ``n`` (the row number), per database."""
    if vendor == "postgresql":
        ago = "now() - make_interval(secs => (n % 2592000))"
        status = "(ARRAY['SUCCESSFUL','SUCCESSFUL','SUCCESSFUL','FAILED','CANCELLED'])[n % 5 + 1]"
        task = "'bench.tasks.task_' || (n % 50)"
        true, false = "true", "false"
        later = "now() + make_interval(secs => (n % 604800))"
    elif vendor == "mysql":
        ago = "NOW(6) - INTERVAL (n % 2592000) SECOND"
        status = "ELT(n % 5 + 1, 'SUCCESSFUL','SUCCESSFUL','SUCCESSFUL','FAILED','CANCELLED')"
        task = "CONCAT('bench.tasks.task_', n % 50)"
        true, false = "1", "0"
        later = "NOW(6) + INTERVAL (n % 604800) SECOND"
    else:
        ago = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (n % 2592000) || ' seconds')"
        status = "CASE n % 5 WHEN 3 THEN 'FAILED' WHEN 4 THEN 'CANCELLED' ELSE 'SUCCESSFUL' END"
        task = "'bench.tasks.task_' || (n % 50)"
        true, false = "1", "0"
        later = "strftime('%Y-%m-%d %H:%M:%f', 'now', '+' || (n % 604800) || ' seconds')"
    return {
        "task_path": task,
        "backend": "'default'",
        "queue_name": "'default'",
        "priority": "0",
        "status": status,
        "args": "'[]'",
        "kwargs": "'{}'",
        "enqueued_at": ago,
        "available_at": ago,
        "due": true,
        "started_at": ago,
        "last_attempted_at": ago,
        "finished_at": ago,
        "attempt": "1",
        "worker_id": "''",
        "worker_ids": "'[\"bench-worker\"]'",
        "prefetched": false,
        "stop_requested": false,
        "has_dependents": false,
        "expires_at": later,
        "errors": "'[]'",
    }


def count_runs() -> dict[str, int]:
    from django.db.models import Count

    from taskmill.models import Run

    return dict(Run.objects.values_list("status").annotate(n=Count("id")).order_by())


# -- the plans, through the engine -------------------------------------------------------------


class Explainer:
    """A Django execute wrapper: EXPLAINs each statement on the runs table before it runs."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.plans: list[tuple[str, str]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not many and "taskmill_run" in sql and not sql.lstrip().upper().startswith("SAVEPOINT"):
            plan = self.explain(context["cursor"].cursor, sql, params)
            self.plans.append((first_line(sql), plan))
        return execute(sql, params, many, context)

    def explain(self, raw: Any, sql: str, params: Any) -> str:
        if self.vendor == "postgresql":
            raw.execute("SAVEPOINT bench_explain")
            raw.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) {sql}", params)
            lines = [row[0] for row in raw.fetchall()]
            raw.execute("ROLLBACK TO SAVEPOINT bench_explain")
            return "\n".join(lines)
        if self.vendor == "mysql":
            raw.execute(f"EXPLAIN {sql}", params)
            columns = [column[0] for column in raw.description]
            keep = ("table", "type", "key", "rows", "Extra")
            return "\n".join(
                "  ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True) if c in keep and v)
                for row in raw.fetchall()
            )
        raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(str(row[-1]) for row in raw.fetchall())


def first_line(sql: str) -> str:
    words = " ".join(sql.split())
    return words[:90] + ("..." if len(words) > 90 else "")


def hot_path_plans(batch: int) -> dict[str, list[tuple[str, str]]]:
    """Claim ``batch`` ready runs, heartbeat them, finish them (all rolled back), through the
    engine, with each statement on the runs table EXPLAINed."""
    from django.db import connection, transaction

    from taskmill.db import Outcome, get_engine

    engine = get_engine("default")
    worker = "bench-big-table"
    plans: dict[str, list[tuple[str, str]]] = {}
    with transaction.atomic():
        now = datetime.now(UTC)
        lease = now + timedelta(seconds=60)
        explainer = Explainer(connection.vendor)
        with connection.execute_wrapper(explainer):
            claimed = engine.claim(
                worker_id=worker, limit=batch, now=now, lease_until=lease, queues=None
            )
        plans["claim"] = explainer.plans
        if not claimed:
            raise SystemExit("bench.big_table: nothing to claim (enqueue first)")
        explainer = Explainer(connection.vendor)
        with connection.execute_wrapper(explainer):
            engine.heartbeat(
                worker_id=worker,
                held={run.id: run.attempt for run in claimed},
                waiting=set(),
                skip=set(),
                now=now,
                lease_until=lease,
                worker_fields={},
            )
        plans["heartbeat"] = explainer.plans
        explainer = Explainer(connection.vendor)
        with connection.execute_wrapper(explainer):
            landed = engine.finish(
                [
                    Outcome(
                        run_id=run.id,
                        attempt=run.attempt,
                        status="SUCCESSFUL",
                        finished_at=now,
                        expires_at=now + timedelta(days=1),
                    )
                    for run in claimed
                ]
            )
        plans["finish"] = explainer.plans
        assert len(landed) == len(claimed), (len(landed), len(claimed))
        transaction.set_rollback(True)
    return plans


def print_plans(plans: dict[str, list[tuple[str, str]]]) -> None:
    for step, statements in plans.items():
        # A row-by-row finish (MySQL, SQLite) sends one statement per run: shown once.
        times: dict[str, int] = {}
        for sql, _ in statements:
            times[sql] = times.get(sql, 0) + 1
        shown = set()
        for sql, plan in statements:
            if sql in shown:
                continue
            shown.add(sql)
            repeated = f"  [x{times[sql]}, the first shown]" if times[sql] > 1 else ""
            print(f"-- {step}: {sql}{repeated}")
            print("   " + plan.replace("\n", "\n   "))


# -- draining --------------------------------------------------------------------------------------


def enqueue(count: int) -> None:
    from bench.tasks import noop

    for start in range(0, count, 5000):
        noop.enqueue_many([((), {})] * min(5000, count - start))


def refill(count: int) -> None:
    """An empty run table, then ``count`` ready no-op runs, analysed (PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE taskmill_run CASCADE")
    enqueue(count)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskmill_run")


def drain_experiment(doc: str, database: str) -> tuple[argparse.Namespace, dict[str, str], Path]:
    """The shared start of a drain A/B on PostgreSQL (bench.partial_indexes,
    bench.raw_own_table): ``--runs`` and ``--rounds``, a fresh database named ``database``
    migrated by taskmill, Django set up on it; the worker processes' environment and a
    directory for their logs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = process_env(configure_database("postgresql", database))
    environment.setup_django()
    return args, env, Path(tempfile.mkdtemp(prefix=f"{database}-"))


def drain(count: int, env: dict[str, str], logdir: Path, label: str) -> dict[str, float]:
    """Run one burst worker over ``count`` ready runs; the rate from the rows' timestamps and
    from first start to the process's exit."""
    from django.db.models import Max, Min

    from taskmill.models import Run

    log = logdir / f"worker-{label}.log"
    cmd = [sys.executable, "-m", "django", "taskmill", "worker", "--burst", "--no-reload"]
    cmd += ["--concurrency", "1"]
    loads = [environment.loadavg()]
    with log.open("wb") as out:
        spawned = time.time()
        process = subprocess.Popen(
            cmd, cwd=environment.REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        code = process.wait(timeout=3600)
        exited = time.time()
    loads.append(environment.loadavg())
    if code:
        raise SystemExit(f"worker exited with {code}; log {log}")
    drained = Run.objects.filter(started_at__gte=datetime.fromtimestamp(spawned, UTC))
    span = drained.aggregate(first=Min("started_at"), last=Max("finished_at"))
    done = drained.filter(status="SUCCESSFUL").count()
    if done != count:
        raise SystemExit(f"drained {done} of {count}; log {log}")
    db_seconds = (span["last"] - span["first"]).total_seconds()
    exit_seconds = exited - span["first"].timestamp()
    return {
        "rate_db": count / db_seconds,
        "rate_exit": count / exit_seconds,
        "wall": exited - spawned,
        "load": f"{loads[0]} -> {loads[1]}",
    }


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.big_table", description=__doc__)
    parser.add_argument("--db", choices=["postgresql", "mysql", "sqlite"], default="postgresql")
    parser.add_argument("--finished", type=int, default=10_000_000)
    parser.add_argument("--drain", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="drains in each state (median)")
    parser.add_argument("--claim-batch", type=int, default=100, help="runs per explained claim")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="rows per fill statement")
    parser.add_argument("--database", default="taskmill_big_table")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)

    env = process_env(configure_database(args.db, args.database))
    environment.setup_django()
    from django.db import connection

    logdir = Path(tempfile.mkdtemp(prefix="taskmill-big-table-"))
    print(f"# the hot path with {args.finished:,} finished runs, on {connection.vendor}")
    print(
        f"taskmill: {environment.REPO} {environment.git_head()}; cores: {os.cpu_count()}; "
        f"load at start: {environment.loadavg()}; worker logs: {logdir}"
    )
    rates = {}
    try:
        for label, finished in (("empty", 0), ("big", args.finished)):
            if finished:
                print(f"\n## filling {finished:,} finished runs")
                seconds = fill_finished(finished, args.chunk)
                print(f"filled in {seconds:.0f}s")
            enqueue(args.drain)
            analyze("taskmill_run")
            print(f"\n## {label}: runs by status {count_runs()}; load {environment.loadavg()}")
            print_plans(hot_path_plans(args.claim_batch))
            measured = []
            for attempt in range(args.repeat):
                if attempt:
                    enqueue(args.drain)
                figures = drain(args.drain, env, logdir, f"{label}-{attempt}")
                measured.append(figures)
                print(
                    f"drain of {args.drain:,} no-op runs, one worker --burst --concurrency 1: "
                    f"{figures['rate_db']:,.0f} runs/s (first start to last finish), "
                    f"{figures['rate_exit']:,.0f} runs/s (first start to exit); "
                    f"load {figures['load']}",
                    flush=True,
                )
            rates[label] = {
                key: statistics.median(figures[key] for figures in measured)
                for key in ("rate_db", "rate_exit")
            }
            print(
                f"median of {args.repeat}: {rates[label]['rate_db']:,.0f} runs/s "
                f"(timestamps), {rates[label]['rate_exit']:,.0f} runs/s (to exit)"
            )
        ratio_db = rates["big"]["rate_db"] / rates["empty"]["rate_db"]
        ratio_exit = rates["big"]["rate_exit"] / rates["empty"]["rate_exit"]
        print(
            f"\n## drain rate with {args.finished:,} finished / with none: "
            f"{ratio_db:.2f} (timestamps), {ratio_exit:.2f} (to exit)"
        )
    finally:
        if not args.keep_database:
            drop_database(args.db, args.database)


if __name__ == "__main__":
    main()
