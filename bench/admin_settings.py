"""Settings for bench/admin_pages.py: the admin and taskmill on the benchmark's PostgreSQL."""

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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("TASKMILL_BENCH_DB", "taskmill_admin_bench"),
        "HOST": os.environ.get("TASKMILL_BENCH_PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("TASKMILL_BENCH_PGPORT", "5432"),
        "USER": os.environ.get("TASKMILL_BENCH_PGUSER", "postgres"),
        "PASSWORD": os.environ.get("TASKMILL_BENCH_PGPASSWORD", ""),
    }
}
TASKS = {"default": {"BACKEND": "taskmill.backend.DatabaseBackend"}}
