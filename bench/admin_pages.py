"""How fast the control room answers with a million runs in the table (PostgreSQL).

    python -m bench.admin_pages [--runs 1000000] [--repeat 5] [--keep-database]

Creates its own database (TASKMILL_BENCH_DB, default taskmill_admin_bench), fills it with
``--runs`` finished runs spread over a week (a few percent failed, with errors), a few
thousand active ones, and a week of per-minute rollups for 20 tasks, then times each admin
page through Django's test client (in this process: the server's own time, no network) and
prints the median and the slowest of ``--repeat`` loads, with the number of SQL queries.
A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.admin_settings")

TASKS = [f"bench.tasks.job_{n:02d}" for n in range(20)]
QUEUES = ["default", "emails", "reports", "imports"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print each page's slowest SQL")
    args = parser.parse_args(argv)

    import django
    from django.conf import settings

    name = settings.DATABASES["default"]["NAME"]
    _recreate(name)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    began = time.monotonic()
    _fill(args.runs)
    print(f"filled {args.runs:,} runs and a week of rollups in {time.monotonic() - began:.0f} s")
    try:
        _measure(args.repeat, args.verbose)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            _drop(name)
    return 0


def _admin_connection():
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"],
        dbname="postgres", autocommit=True,
    )  # fmt: skip


def _recreate(name: str) -> None:
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def _drop(name: str) -> None:
    with _admin_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(runs: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection

    tasks = "ARRAY[" + ", ".join(f"'{task}'" for task in TASKS) + "]"
    queues = "ARRAY[" + ", ".join(f"'{queue}'" for queue in QUEUES) + "]"
    error = (
        '[{"exception_class_path": "builtins.ConnectionError", '
        '"traceback": "Traceback (most recent call last):\\n  ...\\nConnectionError: reset"}]'
    )
    with connection.cursor() as cursor:
        # Finished runs over the last week; every 25th failed.
        cursor.execute(
            f"""
            INSERT INTO taskmill_run (task_path, backend, queue_name, priority, status, args,
                kwargs, enqueued_at, available_at, due, started_at, last_attempted_at,
                finished_at, attempt, worker_id, worker_ids, prefetched, stop_requested,
                has_dependents, errors, return_value)
            SELECT ({tasks})[1 + n %% 20], 'default', ({queues})[1 + n %% 4], 0,
                CASE WHEN n %% 25 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
                jsonb_build_array(n), jsonb_build_object('account', n %% 1000),
                t, t, true, t + interval '5 ms', t + interval '5 ms', t + interval '40 ms', 1,
                '', '["bench-worker"]'::jsonb, false, false, false,
                CASE WHEN n %% 25 = 0 THEN '{error}'::jsonb ELSE '[]'::jsonb END,
                CASE WHEN n %% 25 = 0 THEN NULL ELSE to_jsonb(n) END
            FROM (
                SELECT n, now() - (n * interval '604800 seconds' / %s) AS t
                FROM generate_series(1, %s) AS n
            ) AS spread
            """,
            [runs, runs],
        )
        # A backlog: ready runs in every queue, some running.
        cursor.execute(
            f"""
            INSERT INTO taskmill_run (task_path, backend, queue_name, priority, status, args,
                kwargs, enqueued_at, available_at, due, attempt, worker_id, worker_ids,
                prefetched, stop_requested, has_dependents, errors, lease_expires_at)
            SELECT ({tasks})[1 + n % 20], 'default', ({queues})[1 + n % 4], 0,
                CASE WHEN n % 10 = 0 THEN 'RUNNING' ELSE 'READY' END, '[]'::jsonb, '{{}}'::jsonb,
                now() - interval '1 minute', now() - interval '1 minute', true,
                CASE WHEN n % 10 = 0 THEN 1 ELSE 0 END,
                CASE WHEN n % 10 = 0 THEN 'bench-worker' ELSE '' END, '[]'::jsonb,
                false, false, false, '[]'::jsonb,
                CASE WHEN n % 10 = 0 THEN now() + interval '1 minute' END
            FROM generate_series(1, 5000) AS n
            """
        )
        # A week of rollups: every minute, every task, successes and some failures.
        columns = (
            ", ".join(f"d{i:02d}" for i in range(16))
            + ", "
            + ", ".join(f"l{i:02d}" for i in range(16))
        )
        values = (
            ", ".join(["0"] * 4 + ["count"] + ["0"] * 11)
            + ", "
            + ", ".join(["0"] * 2 + ["count"] + ["0"] * 13)
        )
        cursor.execute(
            f"""
            INSERT INTO taskmill_run_stats (minute, queue_name, task_path, status, count,
                duration_sum, latency_sum, {columns})
            SELECT minute, queue, task, status, count, count * 0.04, count * 0.003, {values}
            FROM (
                SELECT date_trunc('minute', now()) - m * interval '1 minute' AS minute,
                    ({queues})[1 + t % 4] AS queue, ({tasks})[1 + t] AS task, s AS status,
                    CASE WHEN s = 'SUCCESSFUL' THEN 5 ELSE 1 END AS count
                FROM generate_series(0, 10079) AS m, generate_series(0, 19) AS t,
                    unnest(ARRAY['SUCCESSFUL', 'FAILED']) AS s
            ) AS rows
            """
        )
        sums = ", ".join(
            f"SUM({c})" for c in ["count", "duration_sum", "latency_sum", *columns.split(", ")]
        )
        cursor.execute(
            f"""
            INSERT INTO taskmill_run_stats_hourly (hour, queue_name, task_path, status, count,
                duration_sum, latency_sum, {columns})
            SELECT date_trunc('hour', minute), queue_name, task_path, status, {sums}
            FROM taskmill_run_stats GROUP BY 1, 2, 3, 4
            """
        )
        cursor.execute("ANALYZE")
    User.objects.create_superuser("admin", "admin@example.com", "admin")


def _measure(repeat: int, verbose: bool) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from taskmill.models import Run

    client = Client()
    client.login(username="admin", password="admin")
    a_run = Run.objects.filter(status="FAILED").order_by("-id").values_list("pk", flat=True)[0]
    pages = [
        ("dashboard, last hour", "/admin/taskmill/dashboard/"),
        ("dashboard, last day", "/admin/taskmill/dashboard/?window=day"),
        ("dashboard, last week", "/admin/taskmill/dashboard/?window=week"),
        ("dashboard fragment (queues)", "/admin/taskmill/dashboard/?fragment=queues"),
        ("runs list", "/admin/taskmill/run/"),
        ("runs list, failed", "/admin/taskmill/run/?status__exact=FAILED"),
        (
            "runs list, a task and queue",
            f"/admin/taskmill/run/?task_path={TASKS[3]}&queue_name=emails",
        ),
        ("runs list, last hour", "/admin/taskmill/run/?enqueued_within=1h"),
        ("runs list, page 50", "/admin/taskmill/run/?p=50"),
        ("runs search: id", f"/admin/taskmill/run/?q={a_run}"),
        ("runs search: account=42", "/admin/taskmill/run/?q=account%3D42"),
        ("runs search: task text", "/admin/taskmill/run/?q=job_07"),
        ("a failed run's page", f"/admin/taskmill/run/{a_run}/change/"),
        ("queues", "/admin/taskmill/queue/"),
        ("workers", "/admin/taskmill/worker/"),
        ("schedules", "/admin/taskmill/schedule/"),
        ("metrics", "/metrics/"),
    ]
    total = Run.objects.count()
    print(f"\nruns in the table: {total:,} (PostgreSQL); each page loaded {repeat} times\n")
    print(f"{'page':<34} {'median ms':>10} {'max ms':>8} {'queries':>8} {'slowest SQL ms':>15}")
    for label, url in pages:
        times = []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                print(f"{label}: HTTP {response.status_code}", file=sys.stderr)
        slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
        print(
            f"{label:<34} {statistics.median(times):>10.0f} {max(times):>8.0f} "
            f"{len(queries.captured_queries):>8} {float(slowest['time']) * 1000:>15.0f}"
        )
        if verbose:
            print(f"    slowest: {slowest['sql'][:300]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
