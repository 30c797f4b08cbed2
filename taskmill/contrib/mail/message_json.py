"""E-mail messages as JSON and back: what a queued message's run stores (never pickle).

A message is kept as its parts (addresses, subject, body, headers, alternatives,
attachments) rather than as rendered MIME, so the sending side builds it with the same
Django code and settings a direct send would use. Binary content travels as base64.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
from email.mime.base import MIMEBase
from typing import Any

import django
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import EmailAlternative, EmailAttachment

from .errors import UnqueueableEmail

# Bumped if the layout changes, so a worker can tell an old run's message from a new one.
FORMAT = 1

# Django 6.0 builds messages with the modern email API and takes MIMEPart attachments;
# Django 5.2 takes only the legacy MIMEBase.
DJANGO_TAKES_MIMEPART = django.VERSION >= (6, 0)


def _content_to_json(content: Any, where: str) -> dict[str, str]:
    if isinstance(content, str):
        return {"text": content}
    if isinstance(content, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(content)).decode("ascii")}
    if isinstance(content, EmailMessage):  # a message/rfc822 attachment made with Django
        return {"base64": base64.b64encode(content.message().as_bytes()).decode("ascii")}
    if isinstance(content, email.message.Message):
        return {"base64": base64.b64encode(content.as_bytes()).decode("ascii")}
    raise UnqueueableEmail(
        f"Cannot queue this e-mail: {where} is a {type(content).__module__}."
        f"{type(content).__qualname__}; a queued message's content must be str or bytes."
    )


def _content_from_json(data: dict[str, str]) -> str | bytes:
    if "text" in data:
        return data["text"]
    return base64.b64decode(data["base64"])


def _address_to_json(address: Any) -> str | list[str]:
    # Django takes "Name <addr>" strings and (name, addr) pairs alike.
    if isinstance(address, tuple | list):
        return [str(part) for part in address]
    return str(address)


def _address_from_json(address: str | list[str]) -> str | tuple[str, ...]:
    return tuple(address) if isinstance(address, list) else address


def _attachment_to_json(attachment: Any, index: int) -> dict[str, Any]:
    if isinstance(attachment, email.message.MIMEPart | MIMEBase):
        # A ready-made MIME part: kept as its bytes, headers and all.
        return {"mime": base64.b64encode(attachment.as_bytes()).decode("ascii")}
    try:
        filename, content, mimetype = attachment
    except (TypeError, ValueError):
        raise UnqueueableEmail(
            f"Cannot queue this e-mail: attachment {index} is a {type(attachment).__qualname__}, "
            "neither (filename, content, mimetype) nor a MIME part."
        ) from None
    if not isinstance(mimetype, str) or "/" not in mimetype:
        raise UnqueueableEmail(
            f"Cannot queue this e-mail: attachment {index} ({filename!r}) has no MIME type "
            f"({mimetype!r}); use message.attach(), which guesses one."
        )
    return {
        "filename": None if filename is None else str(filename),
        "content": _content_to_json(content, f"the content of attachment {index}"),
        "mimetype": mimetype,
    }


class _ParsedMIMEBase(MIMEBase):
    """A MIMEBase the email parser can fill (Django 5.2 accepts only MIMEBase parts)."""

    def __init__(self, policy: Any = None) -> None:
        email.message.Message.__init__(self, policy=policy or email.policy.compat32)


def _mime_part_from_bytes(data: bytes) -> email.message.Message:
    if DJANGO_TAKES_MIMEPART:
        return email.message_from_bytes(data, policy=email.policy.default)
    return email.message_from_bytes(data, _class=_ParsedMIMEBase)


def message_to_json(message: EmailMessage) -> dict[str, Any]:
    """The message as JSON; raises ``UnqueueableEmail`` for what JSON cannot carry.

    A subclass of ``EmailMessage`` travels as the base class it extends
    (``EmailMultiAlternatives`` or ``EmailMessage``): its data goes, its methods do not.
    """
    multipart = isinstance(message, EmailMultiAlternatives)
    data: dict[str, Any] = {
        "format": FORMAT,
        "class": "EmailMultiAlternatives" if multipart else "EmailMessage",
        "subject": str(message.subject),
        "body": str(message.body),
        "from_email": str(message.from_email),
        "to": [_address_to_json(a) for a in message.to],
        "cc": [_address_to_json(a) for a in message.cc],
        "bcc": [_address_to_json(a) for a in message.bcc],
        "reply_to": [_address_to_json(a) for a in message.reply_to],
        "headers": {str(name): str(value) for name, value in message.extra_headers.items()},
        "content_subtype": message.content_subtype,
        "encoding": None if message.encoding is None else str(message.encoding),
        "attachments": [
            _attachment_to_json(attachment, index)
            for index, attachment in enumerate(message.attachments)
        ],
    }
    if multipart:
        data["alternatives"] = [
            {
                "content": _content_to_json(content, f"alternative {index}"),
                "mimetype": str(mimetype),
            }
            for index, (content, mimetype) in enumerate(message.alternatives)
        ]
    return data


def message_from_json(data: dict[str, Any]) -> EmailMessage:
    """The message ``message_to_json`` described, ready to send."""
    if data.get("format") != FORMAT:
        raise UnqueueableEmail(f"Unknown queued e-mail format {data.get('format')!r}.")
    fields = {
        "subject": data["subject"],
        "body": data["body"],
        "from_email": data["from_email"],
        "to": [_address_from_json(a) for a in data["to"]],
        "cc": [_address_from_json(a) for a in data["cc"]],
        "bcc": [_address_from_json(a) for a in data["bcc"]],
        "reply_to": [_address_from_json(a) for a in data["reply_to"]],
        "headers": dict(data["headers"]),
    }
    if data["class"] == "EmailMultiAlternatives":
        message: EmailMessage = EmailMultiAlternatives(**fields)
        message.alternatives = [
            EmailAlternative(_content_from_json(item["content"]), item["mimetype"])
            for item in data.get("alternatives", [])
        ]
    else:
        message = EmailMessage(**fields)
    message.content_subtype = data["content_subtype"]
    if data["encoding"] is not None:
        message.encoding = data["encoding"]
    # Appended as they were, not through attach(): its guessing and decoding already
    # happened on the way in, when the caller attached them.
    for item in data["attachments"]:
        if "mime" in item:
            message.attachments.append(_mime_part_from_bytes(base64.b64decode(item["mime"])))
        else:
            message.attachments.append(
                EmailAttachment(
                    item["filename"], _content_from_json(item["content"]), item["mimetype"]
                )
            )
    return message
