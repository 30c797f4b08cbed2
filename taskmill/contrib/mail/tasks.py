"""The task that sends one queued message, and its retry policy.

Registered like any task: the worker finds it by its path (a module inside the installed
``taskmill`` app), so nothing but ``EMAIL_BACKEND`` has to be configured.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.module_loading import import_string

from ...compat import TaskResult
from ...retries import default_backoff, failed_attempts
from ...tasks import task
from .conf import mail_setting
from .errors import PermanentEmailFailure, is_retryable, permanent_refusal
from .message_json import message_from_json

logger = logging.getLogger("taskmill.mail")


def delivery_backend() -> BaseEmailBackend:
    """The backend that really sends: TASKMILL_MAIL_BACKEND, never the queue itself."""
    name = mail_setting("TASKMILL_MAIL_BACKEND")
    if "." not in name:
        # Django 6.1's MAILERS: a named, configured mailer.
        from django.core import mail

        if not hasattr(mail, "mailers"):
            raise ImproperlyConfigured(
                f"TASKMILL_MAIL_BACKEND = {name!r} is not an import path, and this Django has "
                "no MAILERS to look it up in."
            )
        backend = mail.mailers[name]
    else:
        backend = import_string(name)()
    from .backend import EmailBackend

    if isinstance(backend, EmailBackend):
        # It would enqueue the message again, for ever.
        raise ImproperlyConfigured(
            "TASKMILL_MAIL_BACKEND names taskmill's queued EmailBackend; it must name the "
            "backend that sends, such as django.core.mail.backends.smtp.EmailBackend."
        )
    return backend


def mail_backoff(exception: BaseException, task_result: TaskResult | None) -> float | None:
    """Seconds before the next attempt, or None when this failure should not be retried."""
    if not is_retryable(exception):
        return None
    failures = 1 if task_result is None else failed_attempts(task_result)
    base = float(mail_setting("TASKMILL_MAIL_BACKOFF_BASE"))
    cap = float(mail_setting("TASKMILL_MAIL_BACKOFF_CAP"))
    return default_backoff(failures, base, cap)


# max_attempts is given per enqueue, from TASKMILL_MAIL_MAX_ATTEMPTS, so the setting in
# force when a message is queued is the one it keeps.
@task(backoff=mail_backoff)
def send_queued_email(message: dict[str, Any]) -> int:
    """Send one queued message; returns how many the delivery backend reports sent (0 or 1)."""
    email_message = message_from_json(message)
    backend = delivery_backend()
    try:
        return backend.send_messages([email_message])
    except Exception as exc:
        reason = permanent_refusal(exc)
        if reason is not None:
            raise PermanentEmailFailure(reason) from exc
        raise
