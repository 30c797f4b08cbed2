"""Settings for taskmill's own tests; TASKMILL_TEST_DB picks sqlite, postgresql or mysql."""

from __future__ import annotations

import importlib.util
import os
import tempfile

SECRET_KEY = "taskmill-tests"
USE_TZ = True
# Django 6 made it the default; on 5.2 the test app would warn (models.W042) on every command.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TIME_ZONE = "UTC"
DEBUG = False
ROOT_URLCONF = "tests.urls"

DB = os.environ.get("TASKMILL_TEST_DB", "sqlite")
# Worker subprocesses started by the tests are pointed at the test database through this.
DB_NAME = os.environ.get("TASKMILL_TEST_DB_NAME")
# Lets several test runs share one server without dropping each other's test database.
SUFFIX = os.environ.get("TASKMILL_TEST_DB_SUFFIX", "")

if DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("TASKMILL_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TASKMILL_PG_PORT", "5432"),
            "USER": os.environ.get("TASKMILL_PG_USER", "postgres"),
            "PASSWORD": os.environ.get("TASKMILL_PG_PASSWORD", ""),
            "NAME": DB_NAME or "taskmill",
            "TEST": {"NAME": f"test_taskmill{SUFFIX}"},
        }
    }
    if os.environ.get("TASKMILL_TEST_PGBOUNCER"):
        # The suite through PgBouncer in transaction mode (scripts/test): a server-side
        # cursor lives across transactions, which such a pooler cannot promise (Django's
        # docs on transaction pooling).
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
        # PostgreSQL itself, for the workers' LISTEN (docs/configuration.md, "Behind
        # PgBouncer"): a worker behind a transaction pooler that is not given one proves the
        # pooler swallows NOTIFY before it finds the server, a 3 s wait at every start.
        # A mirror: the same test database, no other to create.
        DATABASES["direct"] = {
            **DATABASES["default"],
            "PORT": os.environ.get("TASKMILL_PG_DIRECT_PORT", "5432"),
            "DISABLE_SERVER_SIDE_CURSORS": False,
            "TEST": {"MIRROR": "default"},
        }
    if os.environ.get("TASKMILL_TEST_PG_PREPARED"):
        # What docs/performance.md suggests for a faster enqueue: parameters bound on the
        # server and statements prepared after their second use. taskmill's SQL must work so.
        DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 2}
elif DB == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("TASKMILL_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TASKMILL_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TASKMILL_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("TASKMILL_MYSQL_PASSWORD", ""),
            "NAME": DB_NAME or "taskmill",
            "OPTIONS": {"isolation_level": "read committed", "charset": "utf8mb4"},
            "TEST": {"NAME": f"test_taskmill{SUFFIX}", "CHARSET": "utf8mb4"},
        }
    }
elif DB == "sqlite":
    # A file, not :memory:, so that worker processes share it with the test process.
    _path = os.environ.setdefault(
        "TASKMILL_SQLITE_PATH",
        os.path.join(tempfile.gettempdir(), f"taskmill-test-{os.getpid()}.sqlite3"),
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DB_NAME or _path + ".main",
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            "TEST": {"NAME": _path},
        }
    }
else:
    raise RuntimeError(f"TASKMILL_TEST_DB must be sqlite, postgresql or mysql, not {DB!r}")

# Django's default hasher spends about 0.8 s of CPU on each password by design; the tests
# create users (pytest-django's admin_client among them) in many tests on every database.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "taskmill",
    "tests.testapp",
]
if importlib.util.find_spec("django.tasks") is None:  # Django 5.2: the backport
    INSTALLED_APPS.insert(0, "django_tasks")
elif os.environ.get("TASKMILL_TEST_BACKPORT"):
    # tests/test_backport_coexistence.py: processes of a project that lists the backport
    # beside Django's own framework, as the backport's README asks (Wagtail's projects).
    INSTALLED_APPS.insert(0, "django_tasks")

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

TASKS = {
    "default": {
        "BACKEND": "taskmill.backend.DatabaseBackend",
        "QUEUES": ["default", "high", "low", "emails", "erp"],
        # tests/limits: a queue whose runs share a limit, whichever task they are.
        "OPTIONS": {"QUEUE_LIMITS": {"erp": {"concurrency_limit": 2}}},
    },
    # A second alias on the same database, sharing the "default" queue's name: a worker
    # started for one alias must not run the other's runs (tests/test_backend_aliases.py).
    "reports": {
        "BACKEND": "taskmill.backend.DatabaseBackend",
        "QUEUES": ["default", "reports"],
    },
}
if "direct" in DATABASES:  # the suite through PgBouncer: wake-ups over PostgreSQL itself
    for _backend in TASKS.values():
        _backend.setdefault("OPTIONS", {})["LISTEN_DATABASE"] = "direct"

# Leases: long by default so that a loaded machine never rescues a live worker's runs in
# tests not about rescue; the rescue tests shorten them for their workers through the env.
TASKMILL_HEARTBEAT_INTERVAL = float(os.environ.get("TASKMILL_TEST_HEARTBEAT", "2"))
TASKMILL_LEASE = float(os.environ.get("TASKMILL_TEST_LEASE", "60"))
TASKMILL_RESCUE_INTERVAL = float(os.environ.get("TASKMILL_TEST_RESCUE", "2"))
# The chaos soak proves no fire is lost, so it lifts the bound on catching up (which drops
# the oldest of more than 100 missed fires, as after a long outage; test_misfires tests it).
if "TASKMILL_TEST_CATCH_UP_LIMIT" in os.environ:
    TASKMILL_SCHEDULER_CATCH_UP_LIMIT = int(os.environ["TASKMILL_TEST_CATCH_UP_LIMIT"])
TASKMILL_TIMEOUT_GRACE = 1.0
# tests/test_middleware.py, tests/contrib/: the worker middleware, paths separated by commas.
if "TASKMILL_TEST_MIDDLEWARE" in os.environ:
    TASKMILL_MIDDLEWARE = os.environ["TASKMILL_TEST_MIDDLEWARE"].split(",")
# tests/contrib/test_sentry.py: the worker's Sentry set-up (testapp/observability.py).
if "TASKMILL_TEST_SENTRY" in os.environ:
    TASKMILL_SENTRY_REPORT_RETRIES = os.environ["TASKMILL_TEST_SENTRY"]
# tests/test_result_ttl.py: workers whose TASKMILL_RESULT_TTL is set by outcome (JSON seconds).
if "TASKMILL_TEST_RESULT_TTL" in os.environ:
    import json

    TASKMILL_RESULT_TTL = json.loads(os.environ["TASKMILL_TEST_RESULT_TTL"])

# tests/test_worker_json_logs.py: workers whose TASKMILL_LOG_FORMAT is set (valid or not).
if "TASKMILL_TEST_LOG_FORMAT" in os.environ:
    TASKMILL_LOG_FORMAT = os.environ["TASKMILL_TEST_LOG_FORMAT"]

# Queued e-mail (tests/contrib/test_mail.py): its worker processes send through SMTP to the
# server the test started, on the port passed down; only there, as Django 6.1 warns about
# each EMAIL_* setting. Retries come quickly.
if "TASKMILL_TEST_SMTP_PORT" in os.environ:
    EMAIL_HOST = "127.0.0.1"
    EMAIL_PORT = int(os.environ["TASKMILL_TEST_SMTP_PORT"])
    EMAIL_TIMEOUT = 10
TASKMILL_MAIL_BACKOFF_BASE = 0.05
TASKMILL_MAIL_BACKOFF_CAP = 0.2
