"""The demo's tasks: plain Django tasks, run by taskmill's worker.

Most are Django's own tasks API; the last ones use what taskmill adds, through
``taskmill.task``: retries with backoff (``flaky_sync``), a hard timeout (``stuck_export``),
and flow control: one sync per account at a time, in a "partners" queue that runs two at a
time whatever the task (``sync_partner_account``, settings.py's ``QUEUE_LIMITS``), and at
most 10 calls to a partner API in any 30 seconds (``call_partner_api``); a long import
that reports its progress (``import_catalogue``); and a batch of catalogue rows with a
callback when the last one is done (``import_catalogue_row``, ``catalogue_imported``).
"""

import asyncio
import logging
import random
import time

from django.core import mail
from django.core.mail import send_mail

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

import taskmill

logger = logging.getLogger("demo")


@task(queue_name="emails")
def send_welcome_email(email: str, name: str) -> int:
    """Send a welcome mail through Django's mail API (the demo keeps mail in memory)."""
    sent = send_mail(
        subject=f"Welcome, {name}!",
        message=f"Hi {name},\n\nthis mail was sent by a taskmill worker.\n",
        from_email=None,
        recipient_list=[email],
    )
    logger.info("Sent a welcome mail to %s", email)
    # The locmem backend keeps every message in mail.outbox; a demo worker runs for
    # hours, so keep only the latest few.
    del getattr(mail, "outbox", [])[:-20]
    return sent


@task(queue_name="reports")
def rebuild_report(report: str, days: int = 7) -> dict:
    """A slow task that returns a result: the return value must be JSON."""
    began = time.monotonic()
    time.sleep(random.uniform(0.2, 1.5))
    return {
        "report": report,
        "days": days,
        "rows": random.randint(100, 10_000),
        "seconds": round(time.monotonic() - began, 3),
    }


@task
async def check_website(url: str) -> dict:
    """An async task: the worker runs async tasks on one event loop, side by side."""
    await asyncio.sleep(random.uniform(0.05, 0.3))
    return {"url": url, "status": random.choice([200, 200, 200, 301, 503])}


@task
def import_batch(batch: int) -> int:
    """Fails for every third batch, so the admin shows FAILED runs with a traceback."""
    if batch % 3 == 0:
        raise ConnectionError(f"upstream closed the connection while importing batch {batch}")
    return batch * 100


@task(takes_context=True)
def process_upload(context, upload_id: int) -> dict:
    """A task that takes the context: its first argument says which run and attempt this is."""
    logger.info(
        "Processing upload %s: run %s, attempt %s",
        upload_id,
        context.task_result.id,
        context.attempt,
    )
    return {"upload_id": upload_id, "run": context.task_result.id, "attempt": context.attempt}


@task(priority=50)
def page_on_call(message: str) -> str:
    """A high-priority task: workers take it before any waiting run of lower priority."""
    logger.warning("PAGE: %s", message)
    return message


@task
def clean_up_sessions(fired_at: str | None = None) -> str:
    """Run by a cron schedule (demo/schedules.py), which passes the fire time it stands for."""
    logger.info("Cleaning up expired sessions for the fire time %s", fired_at)
    return f"cleaned up for {fired_at}"


@taskmill.task(max_attempts=4, retry_on=(ConnectionError,), backoff_base=1.0, takes_context=True)
def flaky_sync(context, account: int) -> str:
    """Fails its first two attempts with a ConnectionError, then succeeds: the admin shows
    one run with two errors and a success (a retry is the same run, not a new one)."""
    if context.attempt < 3:
        raise ConnectionError(
            f"partner API timed out for account {account} (attempt {context.attempt})"
        )
    return f"account {account} synced on attempt {context.attempt}"


@taskmill.task(timeout=2, max_attempts=2, backoff_base=1.0)
def stuck_export(export_id: int) -> None:
    """Hangs far past its 2 s timeout: the worker kills the child process running it, retries
    once, then fails the run with TaskTimeout, while other tasks go on."""
    time.sleep(3600)


@taskmill.task(queue_name="partners", concurrency_limit=1, concurrency_key="account")
def sync_partner_account(*, account: str, seconds: float = 0.5) -> str:
    """At most one sync per account at once, over every worker, and two in the partners
    queue (its limit in the settings): the others wait, held back, until a slot frees, and
    the admin says why on their page and on the Queues page."""
    time.sleep(seconds)
    return f"account {account} synced"


@taskmill.task(rate_limit="10/30s")
def call_partner_api(order: int) -> dict:
    """At most 10 starts in any 30 seconds, over every worker: a burst of 12 starts 10 at
    once, the last two when the window moves on ("next start in ..." on their page)."""
    return {"order": order, "accepted": True}


@taskmill.task(takes_context=True)
def import_catalogue(context, rows: int = 300) -> int:
    """Imports a row every 0.1 s and says how far it got (``context.set_progress``): its
    page, and the runs list while it runs, show a bar that moves. Every row reports; the
    worker writes a few reports a second. ``.using(metadata=...)`` gave it its source."""
    source = context.metadata.get("source", "catalogue.csv")
    for row in range(1, rows + 1):
        time.sleep(0.1)
        context.set_progress(row, rows, f"imported {row} of {rows} products from {source}")
    return rows


@taskmill.task(queue_name="imports")
def import_catalogue_row(catalogue: str, row: int) -> int:
    """A member of a batch (demo_enqueue opens one now and then): one row of a catalogue.
    One row in 25 is broken, so some batches end with a failure."""
    time.sleep(random.uniform(0.05, 0.4))
    if random.random() < 0.04:
        raise ValueError(f"row {row} of {catalogue} has no price")
    return row


@taskmill.task
def catalogue_imported(batch_id: str) -> str:
    """The batch's on_finish callback: enqueued once, when its last row has ended."""
    batch = taskmill.get_batch(batch_id)
    summary = (
        f"{batch.description}: {batch.succeeded} of {batch.total} rows imported, "
        f"{batch.failed} failed"
    )
    logger.info(summary)
    return summary
