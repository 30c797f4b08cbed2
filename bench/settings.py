"""Django settings for the benchmark: one PostgreSQL database, both queues installed.

The database is the benchmark's own (created and dropped by ``python -m bench``); its name
and server come from the environment so the same settings serve the worker subprocesses.
"""

import os

SECRET_KEY = "taskmill-bench-not-secret"
DEBUG = False  # DEBUG would log every query (memory) and turn on the workers' autoreload
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "taskmill",
    "django_tasks_db",
    "bench",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("TASKMILL_BENCH_DB", "taskmill_bench"),
        "HOST": os.environ.get("TASKMILL_BENCH_PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("TASKMILL_BENCH_PGPORT", "5432"),
        "USER": os.environ.get("TASKMILL_BENCH_PGUSER", "postgres"),
        "PASSWORD": os.environ.get("TASKMILL_BENCH_PGPASSWORD", ""),
        # Persistent connections, as a real deployment would have them.
        "CONN_MAX_AGE": None,
    }
}

TASKS = {
    # taskmill; its worker is `manage.py taskmill worker`.
    "default": {"BACKEND": "taskmill.backend.DatabaseBackend"},
    # django-tasks-db (0.13); its worker is `manage.py db_worker --backend dtdb`, which only
    # takes rows whose backend_name is "dtdb".
    "dtdb": {"BACKEND": "django_tasks_db.backend.DatabaseBackend"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    # Django's tasks framework logs every start and finish at INFO; neither worker should pay
    # for a log line per task in a throughput benchmark (db_worker --verbosity 0 does the same).
    "loggers": {"django.tasks": {"level": "WARNING"}},
}
