"""Queued e-mail: ``EMAIL_BACKEND = "taskmill.contrib.mail.EmailBackend"``.

Each message becomes a run of ``taskmill.contrib.mail.tasks.send_queued_email``, stored as
JSON, and a worker sends it later through ``TASKMILL_MAIL_BACKEND`` (SMTP by default),
retrying with backoff while the mail server is away. See docs/mail.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmailBackend", "PermanentEmailFailure", "UnqueueableEmail"]


def __getattr__(name: str) -> Any:
    # Lazily: the backend imports the task, which needs configured settings and apps.
    if name == "EmailBackend":
        from .backend import EmailBackend

        return EmailBackend
    if name in ("PermanentEmailFailure", "UnqueueableEmail"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(name)
