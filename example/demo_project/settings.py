"""Settings of taskmill's demo project: SQLite, the admin, and taskmill as the TASKS backend.

Not for production: the secret key is public and DEBUG is on.
"""

import importlib.util
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "taskmill-demo-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "taskmill",
    "demo",
]
if importlib.util.find_spec("django.tasks") is None:
    # Django 5.2 has no django.tasks: the django-tasks backport provides the same API.
    INSTALLED_APPS.insert(0, "django_tasks")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
WSGI_APPLICATION = "demo_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # TASKMILL_DEMO_DB: another file, e.g. the browser tests' throw-away database.
        "NAME": os.environ.get("TASKMILL_DEMO_DB") or BASE_DIR / "db.sqlite3",
        "OPTIONS": {
            # WAL lets the web process read while a worker writes; NORMAL sync is safe
            # with WAL and saves an fsync per commit.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            # Take the write lock when a transaction begins, so two writers queue up on
            # the busy timeout instead of failing with "database is locked" mid-way.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# The demo's mail stays in memory (django.core.mail.outbox): the welcome-mail task logs a
# line per message instead of printing whole messages on the worker's console.
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "demo@taskmill.invalid"

TASKS = {
    "default": {
        "BACKEND": "taskmill.backend.DatabaseBackend",
        "QUEUES": ["default", "emails", "reports", "partners", "imports"],
        # Flow control: the partners' API takes two calls at once, whichever task makes them
        # (the admin's Queues page shows it, and may change it at run time).
        "OPTIONS": {"QUEUE_LIMITS": {"partners": {"concurrency_limit": 2}}},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        # taskmill's worker logs start, stop and trouble at INFO and above.
        "taskmill": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Django's tasks framework logs each run starting and finishing at INFO.
        "django.tasks": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "demo": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
