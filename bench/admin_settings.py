"""Settings for bench/admin_pages.py: the admin and taskmill on PostgreSQL, MariaDB or SQLite."""

import os

SECRET_KEY = "taskmill-admin-bench-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.admin_urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "taskmill",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
STATIC_URL = "/static/"
# python -m bench.admin_pages --db {postgresql,mysql,sqlite} sets TASKMILL_BENCH_ENGINE.
ENGINE = os.environ.get("TASKMILL_BENCH_ENGINE", "postgresql")
NAME = os.environ.get("TASKMILL_BENCH_DB", "taskmill_admin_bench")
if ENGINE == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": NAME,
            "HOST": os.environ.get("TASKMILL_BENCH_PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("TASKMILL_BENCH_PGPORT", "5432"),
            "USER": os.environ.get("TASKMILL_BENCH_PGUSER", "postgres"),
            "PASSWORD": os.environ.get("TASKMILL_BENCH_PGPASSWORD", ""),
        }
    }
elif ENGINE == "mysql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": NAME,
            "HOST": os.environ.get("TASKMILL_BENCH_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TASKMILL_BENCH_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TASKMILL_BENCH_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("TASKMILL_BENCH_MYSQL_PASSWORD", ""),
            "OPTIONS": {"isolation_level": "read committed", "charset": "utf8mb4"},
        }
    }
else:
    # The settings the SQLite system check asks for (WAL, IMMEDIATE transactions).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{NAME}.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
TASKS = {"default": {"BACKEND": "taskmill.backend.DatabaseBackend"}}
