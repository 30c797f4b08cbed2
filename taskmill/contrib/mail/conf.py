"""The settings of queued e-mail, with their defaults; read when needed, never cached."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # What finally sends: a backend's import path or, on Django 6.1+, a MAILERS alias.
    "TASKMILL_MAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    # "default" because it works without touching TASKS: Django accepts only the queues in
    # QUEUES, and a worker serves every queue unless told otherwise.
    "TASKMILL_MAIL_QUEUE": "default",
    # With the backoff below, 20 attempts keep a message trying for about three hours on
    # average (at most about six): long enough for a mail server's restart or an outage.
    "TASKMILL_MAIL_MAX_ATTEMPTS": 20,
    # Delay after the n-th failure: uniform(0, min(CAP, BASE * 2 ** (n - 1))) seconds.
    "TASKMILL_MAIL_BACKOFF_BASE": 5.0,
    "TASKMILL_MAIL_BACKOFF_CAP": 1800.0,
    # Failures that are retried (classes or import paths); anything else fails at once. A
    # mail server's permanent refusal (5xx) is never retried, whatever this says.
    "TASKMILL_MAIL_RETRY_ON": (OSError,),
}


def mail_setting(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])
