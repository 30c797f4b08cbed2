"""``python -m bench.partial_indexes``: does making four run-table indexes partial speed up a
drain on PostgreSQL? An experiment, not a test: it prints figures.

A claim and a finish each change ``status``, so PostgreSQL writes every index of the row
again (no HOT update). Four indexes hold mostly NULLs for runs in flight: ``finished_at``,
``expires_at``, ``(schedule_id, scheduled_for)`` and ``(task_path, active_unique_key)``.
Partial (``WHERE ... IS NOT NULL``), they would skip those writes. This script builds the
schema with ``migrate``, then drains the same number of no-op runs with a real
``taskmill worker --burst``, alternating the indexes as migrated ("full") and made partial
by hand ("partial"), and prints each drain and the medians.

    python -m bench.partial_indexes [--runs 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from . import environment
from .big_table import drain, enqueue
from .scale_setup import configure_database, drop_database, process_env

DATABASE = "taskmill_partial_indexes"
UNIQUE = {
    "taskmill_run_unique_fire": "(schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL",
    "taskmill_run_unique_active": (
        "(task_path, active_unique_key) WHERE active_unique_key IS NOT NULL"
    ),
}
UNIQUE_FULL = {
    "taskmill_run_unique_fire": "(schedule_id, scheduled_for)",
    "taskmill_run_unique_active": "(task_path, active_unique_key)",
}


def plain_indexes() -> dict[str, str]:
    """The migrated single-column indexes on finished_at and expires_at: name -> DDL."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'taskmill_run'"
        )
        return {
            name: ddl
            for name, ddl in cursor.fetchall()
            if "WHERE" not in ddl and ("(finished_at)" in ddl or "(expires_at)" in ddl)
        }


def make_partial(partial: bool, plain: dict[str, str]) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for name, ddl in plain.items():
            cursor.execute(f"DROP INDEX {name}")
            column = ddl[ddl.index("(") + 1 : ddl.index(")")]
            cursor.execute(
                f"CREATE INDEX {name} ON taskmill_run ({column}) WHERE {column} IS NOT NULL"
                if partial
                else ddl
            )
        for name in UNIQUE:
            if partial:
                cursor.execute(f"ALTER TABLE taskmill_run DROP CONSTRAINT {name}")
                cursor.execute(f"CREATE UNIQUE INDEX {name} ON taskmill_run {UNIQUE[name]}")
            else:
                cursor.execute(f"DROP INDEX {name}")
                cursor.execute(
                    f"ALTER TABLE taskmill_run ADD CONSTRAINT {name} UNIQUE {UNIQUE_FULL[name]}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = process_env(configure_database("postgresql", DATABASE))
    environment.setup_django()
    from django.db import connection

    logdir = Path(tempfile.mkdtemp(prefix="taskmill-partial-indexes-"))
    rates: dict[str, list[float]] = {"full": [], "partial": []}
    try:
        plain = plain_indexes()
        partial_now = False
        for round_number in range(args.rounds):
            for label in ("full", "partial"):
                if (label == "partial") != partial_now:
                    partial_now = label == "partial"
                    make_partial(partial_now, plain)
                with connection.cursor() as cursor:
                    cursor.execute("TRUNCATE taskmill_run CASCADE")
                enqueue(args.runs)
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE taskmill_run")
                result = drain(args.runs, env, logdir, f"{label}{round_number}")
                rates[label].append(result["rate_db"])
                rate = result["rate_db"]
                print(f"{label:8} round {round_number}: {rate:,.0f} runs/s, load {result['load']}")
        for label, values in rates.items():
            median = statistics.median(values)
            print(f"{label:8} median {median:,.0f} runs/s {[round(v) for v in values]}")
    finally:
        drop_database("postgresql", DATABASE)


if __name__ == "__main__":
    main()
