"""A million runs and a week of rollups for bench/admin_pages.py, on any of the three databases.

PostgreSQL fills its tables with server-side ``generate_series`` (a million rows in seconds);
MariaDB and SQLite get the same rows from Python in batches. Runs are spread over the last
week in id order, as a real table is (a later run has a larger id), with every 25th failed and
a backlog of ready and running runs on top.

``ready_backlog`` adds an outage on top (``--ready-backlog N``): N READY runs piled up over the
last two hours while no worker ran, spread unevenly over three of the four queues (half on
default, a third on emails, the rest on reports; imports gets none, the control room must still
list it) and the 20 tasks, one in 50 deferred to the next hour.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta

TASKS = [f"bench.tasks.job_{n:02d}" for n in range(20)]
QUEUES = ["default", "emails", "reports", "imports"]
WEEK_MINUTES = 7 * 24 * 60
ERROR = {
    "exception_class_path": "builtins.ConnectionError",
    "traceback": "Traceback (most recent call last):\n  ...\nConnectionError: reset",
}


def recreate(engine: str, name: str) -> None:
    """Drop and create the benchmark's database (before Django connects to it)."""
    if engine == "postgresql":
        with _postgres() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
    elif engine == "mysql":
        with _mysql() as connection:
            connection.query(f"DROP DATABASE IF EXISTS `{name}`")
            connection.query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    else:
        _remove_sqlite(name)


def drop(engine: str, name: str) -> None:
    if engine == "postgresql":
        with _postgres() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif engine == "mysql":
        with _mysql() as connection:
            connection.query(f"DROP DATABASE IF EXISTS `{name}`")
    else:
        _remove_sqlite(name)


def fill(engine: str, runs: int, ready_backlog: int = 0) -> None:
    from django.contrib.auth.models import User

    if engine == "postgresql":
        _fill_postgresql(runs)
        if ready_backlog:
            _fill_outage_postgresql(ready_backlog)
    else:
        _fill_portable(runs)
        if ready_backlog:
            _fill_outage_portable(ready_backlog)
    _analyze()
    User.objects.create_superuser("admin", "admin@example.com", "admin")


# The outage's queue for run n: n % 6 -> default 3/6, emails 2/6, reports 1/6.
OUTAGE_QUEUES = ["default", "default", "default", "emails", "emails", "reports"]
OUTAGE_SPAN_SECONDS = 2 * 3600


def _fill_outage_postgresql(ready: int) -> None:
    from django.db import connection

    tasks = "ARRAY[" + ", ".join(f"'{task}'" for task in TASKS) + "]"
    queues = "ARRAY[" + ", ".join(f"'{queue}'" for queue in OUTAGE_QUEUES) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO taskmill_run (task_path, backend, queue_name, priority, status, args,
                kwargs, enqueued_at, available_at, due, attempt, worker_id, worker_ids,
                prefetched, stop_requested, has_dependents, errors)
            SELECT ({tasks})[1 + n %% 20], 'default', ({queues})[1 + n %% 6], 0, 'READY',
                jsonb_build_array(n), jsonb_build_object('account', n %% 1000), t,
                CASE WHEN n %% 50 = 0 THEN now() + interval '1 hour' ELSE t END,
                n %% 50 <> 0, 0, '', '[]'::jsonb, false, false, false, '[]'::jsonb
            FROM (
                SELECT n, now() - ((%s - n) * interval '{OUTAGE_SPAN_SECONDS} seconds' / %s) AS t
                FROM generate_series(1, %s) AS n
            ) AS spread
            """,
            [ready, ready, ready],
        )


def _fill_outage_portable(ready: int) -> None:
    from django.db import connection
    from django.utils import timezone

    adapt = connection.ops.adapt_datetimefield_value
    now = timezone.now()
    span = timedelta(seconds=OUTAGE_SPAN_SECONDS)
    later = adapt(now + timedelta(hours=1))
    columns = (
        "task_path, backend, queue_name, priority, status, args, kwargs, enqueued_at, "
        "available_at, due, attempt, worker_id, worker_ids, prefetched, stop_requested, "
        "has_dependents, errors"
    )

    def rows() -> Iterator[tuple]:
        for n in range(1, ready + 1):
            at = adapt(now - span * (ready - n) / ready)
            deferred = n % 50 == 0
            yield (
                TASKS[n % 20], "default", OUTAGE_QUEUES[n % 6], 0, "READY", f"[{n}]",
                f'{{"account": {n % 1000}}}', at, later if deferred else at, not deferred, 0,
                "", "[]", False, False, False, "[]",
            )  # fmt: skip

    _insert_runs(columns, rows())


def _insert_runs(columns: str, rows: Iterable[tuple]) -> None:
    """INSERT ``rows`` into the runs table with executemany, 20,000 a transaction."""
    from django.db import connection, transaction

    insert = (
        f"INSERT INTO taskmill_run ({columns}) "
        f"VALUES ({', '.join(['%s'] * len(columns.split(', ')))})"
    )
    for chunk in itertools.batched(rows, 20_000):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(insert, chunk)


def _analyze() -> None:
    """Fresh statistics, as a database that has run for a while has them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            {"postgresql": "ANALYZE", "mysql": "ANALYZE TABLE taskmill_run"}.get(
                connection.vendor, "ANALYZE"
            )
        )


def _postgres():
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


class _mysql:
    def __enter__(self):
        import MySQLdb
        from django.conf import settings

        db = settings.DATABASES["default"]
        self.connection = MySQLdb.connect(
            host=db["HOST"], port=int(db["PORT"]), user=db["USER"], password=db["PASSWORD"]
        )
        return self.connection

    def __exit__(self, *exc_info: object) -> None:
        self.connection.close()


def _remove_sqlite(name: str) -> None:
    from django.conf import settings

    path = settings.DATABASES["default"]["NAME"]
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def _fill_postgresql(runs: int) -> None:
    import json

    from django.db import connection

    tasks = "ARRAY[" + ", ".join(f"'{task}'" for task in TASKS) + "]"
    queues = "ARRAY[" + ", ".join(f"'{queue}'" for queue in QUEUES) + "]"
    error = json.dumps([ERROR]).replace("'", "''")
    with connection.cursor() as cursor:
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
                SELECT n, now() - ((%s - n) * interval '604800 seconds' / %s) AS t
                FROM generate_series(1, %s) AS n
            ) AS spread
            """,
            [runs, runs, runs],
        )
    _fill_backlog()
    with connection.cursor() as cursor:
        columns = _rollup_columns()
        values = ", ".join(
            "count" if column in ("d04", "l02") else "0" for column in columns.split(", ")
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
                FROM generate_series(0, {WEEK_MINUTES - 1}) AS m, generate_series(0, 19) AS t,
                    unnest(ARRAY['SUCCESSFUL', 'FAILED']) AS s
            ) AS rows
            """
        )
    _fill_hourly()


def _fill_portable(runs: int) -> None:
    """Rows built in Python and sent with executemany (mysqlclient turns it into multi-row
    INSERTs; SQLite runs it in one transaction): a million runs in about a minute."""
    import json

    from django.db import connection, transaction
    from django.utils import timezone

    adapt = connection.ops.adapt_datetimefield_value
    now = timezone.now()
    week = timedelta(days=7)
    failed_errors, no_errors = json.dumps([ERROR]), "[]"
    columns = (
        "task_path, backend, queue_name, priority, status, args, kwargs, enqueued_at, "
        "available_at, due, started_at, last_attempted_at, finished_at, attempt, worker_id, "
        "worker_ids, prefetched, stop_requested, has_dependents, errors, return_value"
    )

    def rows() -> Iterator[tuple]:
        for n in range(1, runs + 1):
            at = now - week * (runs - n) / runs
            started, finished = at + timedelta(milliseconds=5), at + timedelta(milliseconds=40)
            failed = n % 25 == 0
            yield (
                TASKS[n % 20], "default", QUEUES[n % 4], 0, "FAILED" if failed else "SUCCESSFUL",
                f"[{n}]", f'{{"account": {n % 1000}}}', adapt(at), adapt(at), True,
                adapt(started), adapt(started), adapt(finished), 1, "", '["bench-worker"]',
                False, False, False, failed_errors if failed else no_errors,
                None if failed else str(n),
            )  # fmt: skip

    _insert_runs(columns, rows())
    _fill_backlog()
    rollup = _rollup_columns().split(", ")
    insert = (
        "INSERT INTO taskmill_run_stats (minute, queue_name, task_path, status, count, "
        f"duration_sum, latency_sum, {', '.join(rollup)}) "
        f"VALUES ({', '.join(['%s'] * (7 + len(rollup)))})"
    )
    minute = now.replace(second=0, microsecond=0)
    stats: list[tuple] = []
    for m in range(WEEK_MINUTES):
        at = adapt(minute - timedelta(minutes=m))
        for t in range(20):
            for status, count in (("SUCCESSFUL", 5), ("FAILED", 1)):
                buckets = [count if column in ("d04", "l02") else 0 for column in rollup]
                head = (at, QUEUES[t % 4], TASKS[t], status, count, count * 0.04, count * 0.003)
                stats.append((*head, *buckets))
        if len(stats) >= 20_000:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(insert, stats)
            stats.clear()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(insert, stats)
    _fill_hourly()


def _fill_backlog() -> None:
    """Ready runs in every queue, one in ten running, enqueued a minute ago."""
    from django.utils import timezone

    from taskmill.models import Run

    minute_ago = timezone.now() - timedelta(minutes=1)
    Run.objects.bulk_create(
        [
            Run(
                task_path=TASKS[n % 20],
                backend="default",
                queue_name=QUEUES[n % 4],
                status="RUNNING" if n % 10 == 0 else "READY",
                enqueued_at=minute_ago,
                available_at=minute_ago,
                due=True,
                attempt=1 if n % 10 == 0 else 0,
                worker_id="bench-worker" if n % 10 == 0 else "",
                lease_expires_at=minute_ago + timedelta(minutes=2) if n % 10 == 0 else None,
            )
            for n in range(1, 5001)
        ],
        batch_size=1000,
    )


def _rollup_columns() -> str:
    return ", ".join([f"d{i:02d}" for i in range(16)] + [f"l{i:02d}" for i in range(16)])


def _fill_hourly() -> None:
    """The hourly rollups, summed from the minutes (truncation spelled per database)."""
    from django.db import connection

    hour = {
        "postgresql": "date_trunc('hour', minute)",
        "mysql": "DATE_FORMAT(minute, '%Y-%m-%d %H:00:00')",
        "sqlite": "strftime('%Y-%m-%d %H:00:00', minute)",
    }[connection.vendor]
    columns = _rollup_columns()
    summed = ["count", "duration_sum", "latency_sum", *columns.split(", ")]
    sums = ", ".join(f"SUM({column})" for column in summed)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO taskmill_run_stats_hourly (hour, queue_name, task_path, status, count,
                duration_sum, latency_sum, {columns})
            SELECT {hour}, queue_name, task_path, status, {sums}
            FROM taskmill_run_stats GROUP BY 1, 2, 3, 4
            """
        )
