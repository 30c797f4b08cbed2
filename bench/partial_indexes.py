"""``python -m bench.partial_indexes``: what the partial indexes of migration 0009 buy a drain
on PostgreSQL. An experiment, not a test: it prints figures.

A claim and a finish each change ``status``, so PostgreSQL writes every index of the row
again (no HOT update). Three indexes hold NULL for most runs in flight: ``expires_at``,
``(schedule_id, scheduled_for)`` and ``(task_path, active_unique_key)``; migration 0009 made
them partial (``WHERE ... IS NOT NULL``) so claims and finishes skip them. This script builds
the schema with ``migrate``, then drains the same number of no-op runs with a real
``taskmill worker --burst``, alternating the indexes as migrated ("partial") and made full
by hand, as before 0009 ("full"), and prints each drain and the medians.

    python -m bench.partial_indexes [--runs 20000] [--rounds 3]
"""

from __future__ import annotations

import statistics

from .big_table import drain, drain_experiment, refill
from .scale_setup import drop_database

DATABASE = "taskmill_partial_indexes"
# name -> (UNIQUE or not, columns, the partial index's condition)
INDEXES = {
    "taskmill_run_expires": ("", "(expires_at)", "expires_at IS NOT NULL"),
    "taskmill_run_fire_once": ("UNIQUE", "(schedule_id, scheduled_for)", "schedule_id IS NOT NULL"),
    "taskmill_run_active_once": (
        "UNIQUE",
        "(task_path, active_unique_key)",
        "active_unique_key IS NOT NULL",
    ),
}


def make_partial(partial: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for name, (unique, columns, condition) in INDEXES.items():
            cursor.execute(f"DROP INDEX {name}")
            where = f" WHERE {condition}" if partial else ""
            cursor.execute(f"CREATE {unique} INDEX {name} ON taskmill_run {columns}{where}")


def main() -> None:
    args, env, logdir = drain_experiment(__doc__, DATABASE)
    rates: dict[str, list[float]] = {"full": [], "partial": []}
    try:
        partial_now = True  # as migrated
        for round_number in range(args.rounds):
            for label in ("full", "partial"):
                if (label == "partial") != partial_now:
                    partial_now = label == "partial"
                    make_partial(partial_now)
                refill(args.runs)
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
