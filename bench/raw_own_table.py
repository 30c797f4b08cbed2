"""``python -m bench.raw_own_table``: the raw limit on taskmill's own table, against taskmill.

``python -m bench`` measures the raw limit on a minimal six-column table (bench/rawlimit.py):
what the database allows a queue at all. This asks the next question: how much of the gap
between that and taskmill is taskmill's row (28 columns, the indexes the control room and
the unique rules need), and how much is the worker? On one PostgreSQL database migrated by
taskmill, it alternates two drains of the same number of no-op runs:

- **raw**: one Python process (psycopg, no Django) claims 100 READY runs with the claim's
  own ``FOR UPDATE SKIP LOCKED`` and index order, sets them RUNNING with an attempt, a
  worker and a lease, commits, then sets them SUCCESSFUL with a finish time, commits: the
  two writes per run any correct queue on this table makes, and nothing else;
- **taskmill**: a real ``taskmill worker --burst --concurrency 1`` (heartbeats, rollups,
  fencing, results, signals: everything).

    python -m bench.raw_own_table [--runs 20000] [--rounds 3]
"""

from __future__ import annotations

import statistics
import time

from .big_table import drain, drain_experiment, refill
from .scale_setup import drop_database

DATABASE = "taskmill_raw_own_table"
BATCH = 100

CLAIM = """
UPDATE taskmill_run SET status = 'RUNNING', attempt = attempt + 1, worker_id = 'raw',
    started_at = now(), last_attempted_at = now(), lease_expires_at = now() + interval '60 s'
WHERE id IN (
    SELECT id FROM taskmill_run WHERE status = 'READY' AND due AND available_at <= now()
    ORDER BY priority DESC, available_at, id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING id
"""
FINISH = """
UPDATE taskmill_run SET status = 'SUCCESSFUL', finished_at = now(), worker_id = '',
    lease_expires_at = NULL
WHERE id = ANY(%s) AND status = 'RUNNING'
"""


def raw_drain(count: int) -> float:
    """Claim and finish every ready run with raw SQL; runs per second."""
    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
    ) as conn:
        cursor = conn.cursor()
        began = time.perf_counter()
        done = 0
        while True:
            cursor.execute(CLAIM, (BATCH,))
            ids = [row[0] for row in cursor.fetchall()]
            conn.commit()
            if not ids:
                break
            cursor.execute(FINISH, (ids,))
            conn.commit()
            done += len(ids)
        elapsed = time.perf_counter() - began
    if done != count:
        raise SystemExit(f"the raw loop finished {done} of {count} runs")
    return count / elapsed


def main() -> None:
    args, env, logdir = drain_experiment(__doc__, DATABASE)
    rates: dict[str, list[float]] = {"raw": [], "taskmill": []}
    try:
        for round_number in range(args.rounds):
            refill(args.runs)
            rates["raw"].append(raw_drain(args.runs))
            refill(args.runs)
            result = drain(args.runs, env, logdir, f"taskmill{round_number}")
            rates["taskmill"].append(result["rate_db"])
            print(
                f"round {round_number}: raw {rates['raw'][-1]:,.0f} runs/s, "
                f"taskmill {rates['taskmill'][-1]:,.0f} runs/s, load {result['load']}"
            )
        raw, taskmill = (statistics.median(rates[k]) for k in ("raw", "taskmill"))
        print(f"raw loop on taskmill_run: median {raw:,.0f} runs/s")
        print(f"taskmill worker:         median {taskmill:,.0f} runs/s ({taskmill / raw:.0%})")
    finally:
        drop_database("postgresql", DATABASE)


if __name__ == "__main__":
    main()
