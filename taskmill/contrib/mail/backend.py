"""The e-mail backend that queues: each message becomes a taskmill run, sent by a worker."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from .conf import mail_setting
from .message_json import message_to_json
from .tasks import send_queued_email

logger = logging.getLogger("taskmill.mail")


def enqueue_messages(messages: Sequence[dict[str, Any]]) -> list[Any]:
    """One run per message, in one transaction (the caller's, when there is one)."""
    sender = send_queued_email.using(
        queue_name=mail_setting("TASKMILL_MAIL_QUEUE"),
        max_attempts=int(mail_setting("TASKMILL_MAIL_MAX_ATTEMPTS")),
    )
    return sender.enqueue_many([((message,), {}) for message in messages])


class EmailBackend(BaseEmailBackend):
    """``EMAIL_BACKEND = "taskmill.contrib.mail.EmailBackend"``: queue, send later.

    ``send_messages`` returns how many messages it enqueued. A message without recipients
    is skipped and not counted, as Django's SMTP backend does. ``fail_silently`` hides
    failures to enqueue (the database, an unknown queue); a message that cannot be stored
    as JSON raises ``UnqueueableEmail`` regardless, as a malformed message does in Django.
    """

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Our own attribute: Django 6.1 deprecates the base class keeping it.
        self.fail_silently = fail_silently

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        messages = [message for message in email_messages if message.recipients()]
        if not messages:
            return 0
        payloads = [message_to_json(message) for message in messages]
        try:
            enqueue_messages(payloads)
        except Exception:
            if not self.fail_silently:
                raise
            logger.exception("Could not queue %d e-mail message(s)", len(payloads))
            return 0
        return len(payloads)
