"""The raw limit: what one Python process reaches with raw SQL and no queue library at all.

A table of N ready jobs; the loop claims 100 (SELECT ... FOR UPDATE SKIP LOCKED + UPDATE to
running, commit) and finishes them (UPDATE to done, commit): two commits per batch of 100,
the least any correct database queue does. psycopg 3 on PostgreSQL, mysqlclient on MariaDB,
sqlite3 (WAL, synchronous=NORMAL, BEGIN IMMEDIATE) on SQLite. Runs in the bench's own
process; the result is jobs claimed and finished per second.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .environment import server_params
from .orchestrate import create_pg, drop_pg, mysql_admin

BATCH = 100
DB = "bench_raw_limit"


def _pg_loop(conn: Any, n: int) -> float:
    cur = conn.cursor()
    cur.execute("TRUNCATE jobs RESTART IDENTITY")
    cur.execute(
        "INSERT INTO jobs (status, priority, run_after) "
        "SELECT 0, 0, now() FROM generate_series(1, %s)",
        (n,),
    )
    conn.commit()
    cur.execute("ANALYZE jobs")
    conn.commit()
    began = time.perf_counter()
    while True:
        cur.execute(
            "UPDATE jobs SET status = 1, started_at = now() WHERE id IN ("
            " SELECT id FROM jobs WHERE status = 0 AND run_after <= now()"
            " ORDER BY priority, run_after, id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id",
            (BATCH,),
        )
        ids = [row[0] for row in cur.fetchall()]
        conn.commit()
        if not ids:
            break
        cur.execute("UPDATE jobs SET status = 2, finished_at = now() WHERE id = ANY(%s)", (ids,))
        conn.commit()
    return n / (time.perf_counter() - began)


def pg_limit(n: int, repeat: int) -> list[float]:
    import psycopg

    create_pg(DB)
    try:
        with psycopg.connect(dbname=DB, **server_params()) as conn:
            conn.execute(
                "CREATE TABLE jobs (id bigserial PRIMARY KEY, status smallint NOT NULL,"
                " priority int NOT NULL, run_after timestamptz NOT NULL,"
                " started_at timestamptz, finished_at timestamptz)"
            )
            conn.execute(
                "CREATE INDEX jobs_ready ON jobs (priority, run_after, id) WHERE status = 0"
            )
            conn.commit()
            _pg_loop(conn, max(500, n // 10))  # warm-up
            return [_pg_loop(conn, n) for _ in range(repeat)]
    finally:
        drop_pg(DB)


def _mysql_loop(conn: Any, n: int) -> float:
    cur = conn.cursor()
    cur.execute("TRUNCATE jobs")
    rows = [(0, 0)] * n
    cur.executemany("INSERT INTO jobs (status, priority, run_after) VALUES (%s, %s, NOW(6))", rows)
    conn.commit()
    began = time.perf_counter()
    while True:
        cur.execute(
            "SELECT id FROM jobs WHERE status = 0 AND run_after <= NOW(6)"
            " ORDER BY priority, run_after, id LIMIT %s FOR UPDATE SKIP LOCKED",
            (BATCH,),
        )
        ids = [row[0] for row in cur.fetchall()]
        if not ids:
            conn.commit()
            break
        marks = ",".join(["%s"] * len(ids))
        cur.execute(f"UPDATE jobs SET status = 1, started_at = NOW(6) WHERE id IN ({marks})", ids)
        conn.commit()
        cur.execute(f"UPDATE jobs SET status = 2, finished_at = NOW(6) WHERE id IN ({marks})", ids)
        conn.commit()
    return n / (time.perf_counter() - began)


def mysql_limit(n: int, repeat: int) -> list[float]:
    import MySQLdb

    mysql_admin(f"DROP DATABASE IF EXISTS `{DB}`")
    mysql_admin(f"CREATE DATABASE `{DB}`")
    try:
        conn = MySQLdb.connect(
            host=os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"),
            port=int(os.environ.get("BENCH_MYSQL_PORT", "3306")),
            user=os.environ.get("BENCH_MYSQL_USER", "root"),
            password=os.environ.get("BENCH_MYSQL_PASSWORD", ""),
            database=DB,
        )
        try:
            cur = conn.cursor()
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute(
                "CREATE TABLE jobs (id bigint AUTO_INCREMENT PRIMARY KEY,"
                " status smallint NOT NULL, priority int NOT NULL, run_after datetime(6) NOT NULL,"
                " started_at datetime(6) NULL, finished_at datetime(6) NULL,"
                " INDEX jobs_ready (status, priority, run_after, id)) ENGINE=InnoDB"
            )
            conn.commit()
            _mysql_loop(conn, max(500, n // 10))
            return [_mysql_loop(conn, n) for _ in range(repeat)]
        finally:
            conn.close()
    finally:
        mysql_admin(f"DROP DATABASE IF EXISTS `{DB}`")


def _sqlite_loop(conn: sqlite3.Connection, n: int) -> float:
    conn.execute("DELETE FROM jobs")
    conn.executemany(
        "INSERT INTO jobs (status, priority, run_after) VALUES (0, 0, ?)",
        [(time.time(),)] * n,
    )
    conn.commit()
    began = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")  # SQLite's single writer: the claim cannot race
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM jobs WHERE status = 0 AND run_after <= ?"
                " ORDER BY priority, run_after, id LIMIT ?",
                (time.time(), BATCH),
            )
        ]
        if not ids:
            conn.commit()
            break
        marks = ",".join("?" * len(ids))
        conn.execute(
            f"UPDATE jobs SET status = 1, started_at = ? WHERE id IN ({marks})", [time.time(), *ids]
        )
        conn.commit()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"UPDATE jobs SET status = 2, finished_at = ? WHERE id IN ({marks})",
            [time.time(), *ids],
        )
        conn.commit()
    return n / (time.perf_counter() - began)


def sqlite_limit(n: int, repeat: int) -> list[float]:
    path = Path(tempfile.mkdtemp(prefix="bench-raw-")) / "raw.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status INTEGER NOT NULL,"
            " priority INTEGER NOT NULL, run_after REAL NOT NULL, started_at REAL,"
            " finished_at REAL)"
        )
        conn.execute("CREATE INDEX jobs_ready ON jobs (priority, run_after, id) WHERE status = 0")
        conn.execute("BEGIN")
        _sqlite_loop(conn, max(500, n // 10))
        results = []
        for _ in range(repeat):
            conn.execute("BEGIN")
            results.append(_sqlite_loop(conn, n))
        return results
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        path.parent.rmdir()


LIMITS = {"postgresql": pg_limit, "mysql": mysql_limit, "sqlite": sqlite_limit}


def raw_limit(engine: str, n: int, repeat: int) -> list[float]:
    return LIMITS[engine](n, repeat)


if __name__ == "__main__":  # python -m bench.rawlimit: the three limits alone
    for engine in LIMITS:
        rates = raw_limit(engine, 20_000, 3)
        print(f"{engine:10s} {statistics.median(rates):10,.0f} jobs/s  {rates}")
