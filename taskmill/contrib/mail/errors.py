"""What can go wrong with a queued message, and which delivery failures are worth a retry."""

from __future__ import annotations

import smtplib

from django.utils.module_loading import import_string

from ...exceptions import TaskmillError
from .conf import mail_setting


class UnqueueableEmail(TaskmillError, ValueError):
    """The message holds something JSON cannot carry (an attachment of an unknown type, say).

    Raised by ``send_messages`` (so by ``send_mail``, ``message.send()``) before anything is
    enqueued, even with ``fail_silently=True``: it is a bug in the caller, not an outage.
    """


class PermanentEmailFailure(TaskmillError):
    """The mail server refused the message for good (a 5xx reply): the run fails, no retry.

    Its message says who refused what; the original SMTP error is chained to it, so the
    run's traceback shows both.
    """


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _is_permanent_code(code: int) -> bool:
    # RFC 5321: 5yz is a permanent negative reply, 4yz a transient one.
    return 500 <= code <= 599


def permanent_refusal(exc: BaseException) -> str | None:
    """A readable reason when ``exc`` is a permanent refusal by the mail server, else None.

    Authentication failures are 5xx too, but they are about this project's credentials, not
    the message: they are retried, so that fixing the password delivers what is queued.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # smtplib raises it only when every recipient was refused; one that is merely
        # deferred (4xx) may yet succeed, so the whole message is retried.
        refusals = exc.recipients
        if refusals and all(_is_permanent_code(code) for code, _ in refusals.values()):
            detail = "; ".join(
                f"{address}: {code} {_text(reply)}" for address, (code, reply) in refusals.items()
            )
            return f"The mail server refused every recipient permanently ({detail})."
        return None
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return None
    if isinstance(exc, smtplib.SMTPResponseException) and _is_permanent_code(exc.smtp_code):
        return (
            f"The mail server refused the message permanently ({type(exc).__name__}: "
            f"{exc.smtp_code} {_text(exc.smtp_error)})."
        )
    return None


def retryable_types() -> tuple[type[BaseException], ...]:
    """TASKMILL_MAIL_RETRY_ON as exception classes (import paths are imported)."""
    configured = mail_setting("TASKMILL_MAIL_RETRY_ON")
    if isinstance(configured, str | type):
        configured = (configured,)
    return tuple(import_string(item) if isinstance(item, str) else item for item in configured)


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed delivery should be tried again (if attempts remain)."""
    if isinstance(exc, PermanentEmailFailure | UnqueueableEmail):
        return False
    return isinstance(exc, retryable_types())
