"""Django settings for the Django-based systems (taskmill, django-tasks-db, dj-queue, django-q2).

One module for all of them: BENCH_PEER says which app and TASKS backend, BENCH_ENGINE which
database (taskmill also runs on MariaDB and SQLite). The orchestrator sets the variables for
the adapter, which passes them on to the worker it starts.
"""

from __future__ import annotations

import os
from typing import Any

PEER = os.environ.get("BENCH_PEER", "taskmill")
ENGINE = os.environ.get("BENCH_ENGINE", "postgresql")
DB_NAME = os.environ.get("BENCH_DB_NAME", "bench")

SECRET_KEY = "bench-not-secret"
DEBUG = False  # DEBUG keeps every query in memory and turns on autoreload
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_db: dict[str, Any]
if ENGINE == "postgresql":
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DB_NAME,
        "HOST": os.environ.get("BENCH_PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PGPORT", "5432"),
        "USER": os.environ.get("BENCH_PGUSER", "postgres"),
        "PASSWORD": os.environ.get("BENCH_PGPASSWORD", ""),
    }
    if os.environ.get("BENCH_PG_PREPARED"):  # the taskmill-prepared line (bench/systems.py)
        _db["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 2}
elif ENGINE == "mysql":
    _db = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": DB_NAME,
        "HOST": os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_MYSQL_PORT", "3306"),
        "USER": os.environ.get("BENCH_MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("BENCH_MYSQL_PASSWORD", ""),
        "OPTIONS": {"isolation_level": "read committed", "charset": "utf8mb4"},
    }
else:  # sqlite, in WAL mode as taskmill's docs recommend
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DB_NAME,
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
_db["CONN_MAX_AGE"] = None  # persistent connections, as a deployment has them
DATABASES = {"default": _db}

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "benchtasks"]
TASKS: dict[str, Any] = {}
if PEER == "taskmill":
    INSTALLED_APPS.append("taskmill")
    # "limited": the queue the queue-limit figures (bench/limits.py) limit
    TASKS = {
        "default": {
            "BACKEND": "taskmill.backend.DatabaseBackend",
            "QUEUES": ["default", "limited"],
        }
    }
    # The queue-limit figures (bench/limits.py) start their workers with this set, as JSON
    # ({"limited": {"concurrency_limit": 4}}); every other figure runs with no limit at all.
    if os.environ.get("BENCH_QUEUE_LIMITS"):
        import json

        TASKS["default"]["OPTIONS"] = {"QUEUE_LIMITS": json.loads(os.environ["BENCH_QUEUE_LIMITS"])}
elif PEER == "django-tasks-db":
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {"default": {"BACKEND": "django_tasks_db.backend.DatabaseBackend"}}
elif PEER == "dj-queue":
    INSTALLED_APPS.append("dj_queue")
    # dj-queue's documented defaults (one worker process of 3 threads, 0.1 s poll, LISTEN/
    # NOTIFY), except the thread count, which the bench sets for each concurrency figure.
    _threads = int(os.environ.get("BENCH_CONCURRENCY", "3"))
    TASKS = {
        "default": {
            "BACKEND": "dj_queue.backend.DjQueueBackend",
            "OPTIONS": {
                "workers": [
                    {"queues": "*", "threads": _threads, "processes": 1, "polling_interval": 0.1}
                ],
                # finished jobs are kept (its default), which is what the bench counts
                "preserve_finished_jobs": True,
            },
        }
    }
elif PEER == "django-q2":
    INSTALLED_APPS.append("django_q")
    Q_CLUSTER = {
        "name": "bench",
        "orm": "default",  # the ORM broker: the database is the queue
        "workers": int(os.environ.get("BENCH_CONCURRENCY", "1")),
        "timeout": 60,
        "retry": 120,
        "poll": float(os.environ.get("BENCH_Q2_POLL", "0.2")),  # 0.2 s is its default
        "catch_up": False,
        "sync": False,
        "log_level": "WARNING",
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    # No log line per task in a throughput benchmark, for any of them.
    "loggers": {"django.tasks": {"level": "WARNING"}, "django_tasks": {"level": "WARNING"}},
}
