"""How fast the control room answers with a million runs in the table.

    python -m bench.admin_pages [--db postgresql|mysql|sqlite] [--runs 1000000] [--repeat 5]
                                [--ready-backlog 0]

Creates its own database (TASKMILL_BENCH_DB, default taskmill_admin_bench), fills it with
``--runs`` finished runs spread over a week (a few percent failed, with errors), a few
thousand active ones, and a week of per-minute rollups for 20 tasks, then times each admin
page through Django's test client (in this process: the server's own time, no network) and
prints the median and the slowest of ``--repeat`` loads, with the number of SQL queries.
``--ready-backlog N`` adds an outage: N READY runs piled up while no worker ran
(bench.admin_fill), what operators open the control room for.
A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.admin_settings")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgresql", "mysql", "sqlite"], default="postgresql")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--ready-backlog", type=int, default=0, metavar="N", help="add N READY runs (an outage)"
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print each page's slowest SQL")
    args = parser.parse_args(argv)
    os.environ["TASKMILL_BENCH_ENGINE"] = args.db

    import django
    from django.conf import settings

    from bench import admin_fill

    name = settings.NAME
    admin_fill.recreate(args.db, name)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    began = time.monotonic()
    admin_fill.fill(args.db, args.runs, args.ready_backlog)
    print(
        f"filled {args.runs:,} runs, {args.ready_backlog:,} READY runs of a backlog and a "
        f"week of rollups in {time.monotonic() - began:.0f} s"
    )
    try:
        _measure(args.repeat, args.verbose)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            admin_fill.drop(args.db, name)
    return 0


def _measure(repeat: int, verbose: bool) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.admin_fill import TASKS
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
        # Task 1 runs on the emails queue; task 3 never does: the filter matches nothing,
        # the worst case (the whole task's slice is read to find no row).
        ("runs list, task+queue", f"/admin/taskmill/run/?task_path={TASKS[1]}&queue_name=emails"),
        (
            "runs list, task+queue, none",
            f"/admin/taskmill/run/?task_path={TASKS[3]}&queue_name=emails",
        ),
        ("runs list, last hour", "/admin/taskmill/run/?enqueued_within=1h"),
        ("runs list, page 20", "/admin/taskmill/run/?p=20"),
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
    print(f"\nruns in the table: {total:,} ({connection.vendor}); each page loaded {repeat} times")
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
