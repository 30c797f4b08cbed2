"""Queued e-mail: a real SMTP server (aiosmtpd), real worker processes, real databases."""

from __future__ import annotations

import email
import email.policy
import signal
import smtplib
import socket
from collections.abc import Iterator
from email.message import MIMEPart
from email.mime.image import MIMEImage

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import transaction

from taskmill.compat import InvalidTask
from taskmill.contrib.mail.errors import (
    PermanentEmailFailure,
    UnqueueableEmail,
    is_retryable,
    permanent_refusal,
)
from taskmill.contrib.mail.message_json import (
    DJANGO_TAKES_MIMEPART,
    message_from_json,
    message_to_json,
)
from taskmill.contrib.mail.tasks import delivery_backend
from taskmill.models import Run, RunStatus
from taskmill.testing import run_queued
from tests.conftest import only_on, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    only_on(
        "mysql",
        "SMTP delivery and its retries do not depend on the database "
        "(the queue under it is tested on every database)",
    ),
]

SEND_TASK = "taskmill.contrib.mail.tasks.send_queued_email"
QUEUED_BACKEND = "taskmill.contrib.mail.EmailBackend"
BINARY = bytes(range(256)) * 4  # every byte value, not valid UTF-8


class Collector:
    """An aiosmtpd handler that keeps every message it accepts, and refuses on request."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        # address -> the replies its next RCPTs get, one each; then it is accepted.
        self.refuse_next: dict[str, list[str]] = {}
        # address -> the reply every RCPT of it gets.
        self.refuse_always: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_always:
            return self.refuse_always[address]
        if self.refuse_next.get(address):
            return self.refuse_next[address].pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SMTPServer:
    """A real SMTP server on a fixed port that the test can stop and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.collector = Collector()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.collector, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    """The server, not started: each test decides when it is up."""
    server = SMTPServer(free_port())
    yield server
    server.stop()


@pytest.fixture
def subprocess_env(subprocess_env: dict[str, str], smtp: SMTPServer) -> dict[str, str]:
    # Worker processes read EMAIL_PORT from tests/settings.py, which reads this.
    return {**subprocess_env, "TASKMILL_TEST_SMTP_PORT": str(smtp.port)}


@pytest.fixture
def queued_mail(settings) -> None:
    """This process queues its mail (pytest-django had set the locmem backend)."""
    settings.EMAIL_BACKEND = QUEUED_BACKEND


def mail_runs():
    return Run.objects.filter(task_path=SEND_TASK)


def only_mail_run() -> Run:
    (run,) = mail_runs()
    return run


def parsed(content: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(content, policy=email.policy.default)


def text_of(part: email.message.EmailMessage) -> str:
    # SMTP carries lines ending in CRLF; the message was written with LF.
    return part.get_content().replace("\r\n", "\n")


# -- delivered by a real worker through a real SMTP server -------------------------------------


def test_a_message_with_html_and_attachments_arrives_intact(queued_mail, smtp, run_worker):
    smtp.start()
    message = EmailMultiAlternatives(
        subject="Votre reçu n° 42",
        body="Plain text, with accents: é à ü.",
        from_email="Shop <shop@example.com>",
        to=["ada@example.com"],
        cc=["bob@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Order": "42"},
    )
    message.attach_alternative("<p>Your <b>receipt</b> n° 42</p>", "text/html")
    message.attach("receipt.bin", BINARY, "application/octet-stream")
    message.attach("notes.txt", "line one\nline two\n", "text/plain")

    assert message.send() == 1  # enqueued, not sent
    run = only_mail_run()
    assert (run.status, run.queue_name, run.options) == (
        RunStatus.READY,
        "default",
        {"max_attempts": 20},
    )
    assert smtp.collector.received == []

    run_worker("--burst", "--no-scheduler")

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESSFUL and run.return_value == 1
    (mail_from, recipients, content) = smtp.collector.received[0]
    assert len(smtp.collector.received) == 1
    assert mail_from == "shop@example.com"
    assert sorted(recipients) == ["ada@example.com", "audit@example.com", "bob@example.com"]
    received = parsed(content)
    assert received["Subject"] == "Votre reçu n° 42"
    assert received["From"] == "Shop <shop@example.com>"
    assert (received["To"], received["Cc"]) == ("ada@example.com", "bob@example.com")
    assert received["Reply-To"] == "help@example.com" and received["X-Order"] == "42"
    assert received["Bcc"] is None  # bcc is in the envelope only
    # Django 6.1 ends each text part with a newline, 5.2 does not: the text is what counts.
    body = text_of(received.get_body(("plain",))).rstrip("\n")
    assert body == "Plain text, with accents: é à ü."
    assert text_of(received.get_body(("html",))).rstrip("\n") == "<p>Your <b>receipt</b> n° 42</p>"
    attachments = {part.get_filename(): part for part in received.iter_attachments()}
    assert set(attachments) == {"receipt.bin", "notes.txt"}
    assert attachments["receipt.bin"].get_content_type() == "application/octet-stream"
    assert attachments["receipt.bin"].get_content() == BINARY
    assert text_of(attachments["notes.txt"]).rstrip("\n") == "line one\nline two"


def test_while_the_server_is_down_it_retries_then_delivers_once(
    queued_mail, settings, smtp, start_worker
):
    settings.TASKMILL_MAIL_MAX_ATTEMPTS = 1000  # the outage must not use them up
    mail.send_mail("Hello", "Are you there?", "shop@example.com", ["ada@example.com"])
    worker = start_worker("--no-scheduler", "--poll-interval", "0.1")

    # Nothing listens on the port: each attempt fails, is recorded, and is retried.
    wait_until(
        lambda: len(only_mail_run().errors) >= 3, timeout=60, message="three failed attempts"
    )
    assert only_mail_run().status in (RunStatus.READY, RunStatus.RUNNING)

    smtp.start()
    wait_until(
        lambda: only_mail_run().status == RunStatus.SUCCESSFUL, timeout=60, message="delivery"
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0

    run = only_mail_run()
    assert len(smtp.collector.received) == 1
    assert parsed(smtp.collector.received[0][2])["Subject"] == "Hello"
    assert run.attempt == len(run.errors) + 1  # every attempt but the last failed
    assert {e["exception_class_path"] for e in run.errors} == {"builtins.ConnectionRefusedError"}


def test_a_temporary_refusal_is_retried(queued_mail, smtp, start_worker):
    smtp.collector.refuse_next["ada@example.com"] = [
        "451 4.7.1 Greylisted, try again later",
        "451 4.7.1 Greylisted, try again later",
    ]
    smtp.start()
    mail.send_mail("Hello", "Body", "shop@example.com", ["ada@example.com"])
    worker = start_worker("--no-scheduler", "--poll-interval", "0.1")

    wait_until(
        lambda: only_mail_run().status == RunStatus.SUCCESSFUL, timeout=60, message="delivery"
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0

    run = only_mail_run()
    assert len(smtp.collector.received) == 1
    assert [e["exception_class_path"] for e in run.errors] == ["smtplib.SMTPRecipientsRefused"] * 2
    assert "451" in run.errors[0]["traceback"]


def test_a_permanent_refusal_fails_the_run_at_once_with_a_readable_error(
    queued_mail, smtp, run_worker
):
    smtp.collector.refuse_always["nobody@example.com"] = "550 5.1.1 No such user here"
    smtp.start()
    mail.send_mail("Hello", "Body", "shop@example.com", ["nobody@example.com"])

    run_worker("--burst", "--no-scheduler")

    run = only_mail_run()
    assert run.status == RunStatus.FAILED
    assert run.attempt == 1  # 20 attempts allowed; none used after a permanent refusal
    (error,) = run.errors
    assert error["exception_class_path"] == "taskmill.contrib.mail.errors.PermanentEmailFailure"
    assert (
        "PermanentEmailFailure: The mail server refused every recipient permanently "
        "(nobody@example.com: 550 5.1.1 No such user here)." in error["traceback"]
    )
    assert "SMTPRecipientsRefused" in error["traceback"]  # the cause, chained
    assert smtp.collector.received == []


# -- queueing, in this process -----------------------------------------------------------------


def test_send_messages_counts_what_it_enqueued(queued_mail):
    with mail.get_connection() as connection:
        sent = connection.send_messages(
            [
                EmailMessage("One", "Body", "shop@example.com", ["a@example.com"]),
                EmailMessage("Nobody", "Body", "shop@example.com", []),  # skipped, as SMTP does
                EmailMessage("Two", "Body", "shop@example.com", ["b@example.com"]),
            ]
        )
    assert sent == 2
    subjects = [run.args[0]["subject"] for run in mail_runs().order_by("id")]
    assert subjects == ["One", "Two"]


def test_a_rolled_back_transaction_queues_no_mail(queued_mail):
    with pytest.raises(RuntimeError), transaction.atomic():
        mail.send_mail("Order placed", "Body", "shop@example.com", ["ada@example.com"])
        assert mail_runs().count() == 1
        raise RuntimeError("the request failed")
    assert mail_runs().count() == 0


def test_fail_silently_hides_a_failure_to_enqueue(queued_mail, settings):
    settings.TASKMILL_MAIL_QUEUE = "not-in-QUEUES"
    with pytest.raises(InvalidTask):
        mail.send_mail("Hello", "Body", "shop@example.com", ["ada@example.com"])
    sent = mail.send_mail(
        "Hello", "Body", "shop@example.com", ["ada@example.com"], fail_silently=True
    )
    assert sent == 0 and mail_runs().count() == 0


def test_what_json_cannot_carry_is_refused_at_send_time_even_silently(queued_mail):
    message = EmailMessage("Report", "Body", "shop@example.com", ["ada@example.com"])
    message.attach("report.bin", object(), "application/octet-stream")
    refusal = r"the content of attachment 0 is a builtins\.object"
    with pytest.raises(UnqueueableEmail, match=refusal):
        message.send(fail_silently=True)
    assert mail_runs().count() == 0


def test_the_queue_and_attempts_come_from_the_settings(queued_mail, settings):
    settings.TASKMILL_MAIL_QUEUE = "emails"
    settings.TASKMILL_MAIL_MAX_ATTEMPTS = 3
    mail.send_mail("Hello", "Body", "shop@example.com", ["ada@example.com"])
    run = only_mail_run()
    assert (run.queue_name, run.options) == ("emails", {"max_attempts": 3})


def test_a_mime_part_attachment_travels_as_json(queued_mail, settings, mailoutbox):
    # Through the database and the real worker code (in-process), into Django's outbox.
    settings.TASKMILL_MAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    if DJANGO_TAKES_MIMEPART:
        part = MIMEPart()
        part.set_content(BINARY, maintype="image", subtype="png", filename="logo.png")
    else:  # Django 5.2 takes only the legacy MIMEBase
        part = MIMEImage(BINARY, "png")
        part.add_header("Content-Disposition", "attachment", filename="logo.png")
    message = EmailMultiAlternatives("Logo", "See attached", "shop@example.com", ["a@x.org"])
    message.attach(part)
    message.send()

    assert run_queued().attempts == 1

    (delivered,) = mailoutbox
    attachment = next(parsed(delivered.message().as_bytes()).iter_attachments())
    assert attachment.get_filename() == "logo.png"
    assert attachment.get_content() == BINARY


def test_the_json_round_trip_keeps_every_field():
    message = EmailMultiAlternatives(
        "Subject",
        "Body",
        "shop@example.com",
        ["a@example.com"],
        cc=["c@example.com"],
        bcc=["b@example.com"],
        reply_to=["r@example.com"],
        headers={"X-Tag": "t"},
    )
    message.content_subtype = "html"
    message.attach_alternative(b"<p>bytes</p>", "text/html")
    message.attach("data.bin", BINARY, "application/octet-stream")

    rebuilt = message_from_json(message_to_json(message))

    assert type(rebuilt) is EmailMultiAlternatives
    for field in ("subject", "body", "from_email", "to", "cc", "bcc", "reply_to"):
        assert getattr(rebuilt, field) == getattr(message, field), field
    assert rebuilt.extra_headers == {"X-Tag": "t"}
    assert rebuilt.content_subtype == "html"
    assert list(rebuilt.alternatives) == [(b"<p>bytes</p>", "text/html")]
    assert list(rebuilt.attachments) == [("data.bin", BINARY, "application/octet-stream")]
    plain = message_from_json(message_to_json(EmailMessage("S", "B", "f@x.org", ["t@x.org"])))
    assert type(plain) is EmailMessage


def test_which_failures_are_retried():
    refused = smtplib.SMTPRecipientsRefused({"a@x.org": (550, b"No such user")})
    deferred = smtplib.SMTPRecipientsRefused({"a@x.org": (550, b"No"), "b@x.org": (451, b"Later")})
    assert permanent_refusal(refused) == (
        "The mail server refused every recipient permanently (a@x.org: 550 No such user)."
    )
    assert permanent_refusal(deferred) is None  # one recipient may yet be reached
    assert permanent_refusal(smtplib.SMTPDataError(554, b"Spam")) is not None
    assert permanent_refusal(smtplib.SMTPSenderRefused(451, b"Later", "f@x.org")) is None
    # Wrong credentials are the project's to fix; what is queued must survive the fix.
    assert permanent_refusal(smtplib.SMTPAuthenticationError(535, b"Bad credentials")) is None
    assert is_retryable(ConnectionRefusedError()) and is_retryable(smtplib.SMTPServerDisconnected())
    assert is_retryable(TimeoutError()) and is_retryable(deferred)
    assert not is_retryable(PermanentEmailFailure("refused"))
    assert not is_retryable(ValueError("a bug is not an outage"))


def test_the_delivery_backend_cannot_be_the_queue_itself(settings):
    settings.TASKMILL_MAIL_BACKEND = QUEUED_BACKEND
    with pytest.raises(ImproperlyConfigured, match="must name the backend that sends"):
        delivery_backend()


@pytest.mark.skipif(not hasattr(mail, "mailers"), reason="MAILERS is new in Django 6.1")
def test_on_django_6_1_both_ends_can_be_mailers(settings, mailoutbox):
    settings.MAILERS = {
        "default": {"BACKEND": QUEUED_BACKEND},
        "outbox": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
    }
    settings.TASKMILL_MAIL_BACKEND = "outbox"  # a MAILERS alias, not an import path

    assert mail.send_mail("Hello", "Body", "shop@example.com", ["ada@example.com"]) == 1
    assert mailoutbox == [] and mail_runs().count() == 1

    run_queued()

    assert [message.subject for message in mailoutbox] == ["Hello"]
