"""Set-up for the bench's scale scripts: a fresh database on any of the three engines, the
settings its processes read, EXPLAIN of a compiled query, the load average."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import environment

SETTINGS_TEMPLATE = '''"""bench settings on {db}, written by bench.scheduler_scale."""
from importlib.util import find_spec

from bench.settings import *  # noqa: F403
from bench.settings import INSTALLED_APPS, TASKS

if find_spec("django_tasks_db") is None:  # the peer is not needed here
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "django_tasks_db"]
    # bench.tasks declares the peer's tasks on the "dtdb" alias: a taskmill backend stands in.
    TASKS = {{"default": TASKS["default"], "dtdb": TASKS["default"]}}
{databases}
'''


# -- databases ----------------------------------------------------------------------------------


def configure_database(db: str, name: str) -> dict[str, str]:
    """Create an empty database ``name`` on ``db`` and point this process (and the processes it
    starts) at it; return the environment those processes need."""
    env: dict[str, str] = {}
    databases = ""
    if db == "postgresql":
        environment.create_database(name)
        env["TASKMILL_BENCH_DB"] = name
        os.environ["TASKMILL_BENCH_DB"] = name
    elif db == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="")
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.close()
        databases = {
            "ENGINE": "django.db.backends.mysql",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "USER": "root",
            "PASSWORD": "",
            "NAME": name,
            "CONN_MAX_AGE": None,
            "OPTIONS": {"isolation_level": "read committed", "charset": "utf8mb4"},
        }
    elif db == "sqlite":
        path = Path(tempfile.gettempdir()) / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        databases = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    else:
        raise SystemExit(f"--db must be postgresql, mysql or sqlite, not {db!r}")
    # A settings module of our own, in a temporary directory: bench.settings with this
    # database (bench.settings is PostgreSQL's), without the peer if it is not installed.
    folder = Path(tempfile.mkdtemp(prefix="taskmill-bench-settings-"))
    module = f"bench_{db}_settings"
    text = SETTINGS_TEMPLATE.format(
        db=db, databases=f"DATABASES = {{'default': {databases!r}}}" if databases else ""
    )
    (folder / f"{module}.py").write_text(text)
    sys.path.insert(0, str(folder))
    environment.SETTINGS = module
    env["PYTHONPATH"] = str(folder)
    return env


def drop_database(db: str, name: str) -> None:
    from django.db import connections

    connections.close_all()
    if db == "postgresql":
        environment.drop_database(name)
    elif db == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", passwd="")
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
    else:
        from django.conf import settings

        for suffix in ("", "-wal", "-shm"):
            Path(f"{settings.DATABASES['default']['NAME']}{suffix}").unlink(missing_ok=True)


def process_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = environment.SETTINGS
    paths = [extra.get("PYTHONPATH", ""), str(environment.REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))
    env.update({key: value for key, value in extra.items() if key != "PYTHONPATH"})
    env.pop("DJANGO_AUTORELOAD_ENV", None)
    return env


def analyze(table: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {table}")
        elif connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE {table}")
            cursor.fetchall()
        else:
            cursor.execute("ANALYZE")


def explain(sql: str, params: list[Any]) -> str:
    """The database's plan of ``sql``, executed (PostgreSQL, MariaDB) where that is possible."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
        elif connection.vendor == "mysql":
            cursor.execute(f"EXPLAIN {sql}", params)
            columns = [column[0] for column in cursor.description]
            rows = cursor.fetchall()
            transaction.set_rollback(True)
            return "\n".join(
                "  ".join(f"{c}={v}" for c, v in zip(columns, row, strict=True) if v is not None)
                for row in rows
            )
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            rows = cursor.fetchall()
            transaction.set_rollback(True)
            return "\n".join(str(row[-1]) for row in rows)
        lines = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)  # an executed UPDATE must not stay
        return "\n".join(lines)


def compiled(queryset: Any) -> tuple[str, list[Any]]:
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


def loadavg() -> str:
    return environment.loadavg()
