"""Tasks whose body meets a real, transient database error (tests/test_database_outages.py).

``provoke_outage`` makes the database fail the task's own next statement for real, the way
an outage does: on PostgreSQL the session terminates itself (``pg_terminate_backend``: the
error a server shutdown or a failover gives, "terminating connection due to administrator
command"), on MariaDB/MySQL it kills its own connection, on SQLite a second connection holds
the write lock past the task's (shortened) busy timeout: "database is locked".

Each task writes ``<kind> <run id> <attempt>`` to the side-effect log on every attempt and
meets the outage on its first ``outages`` attempts (Django's attempt number: one per
worker start), then writes its Effect row.
"""

from __future__ import annotations

import sqlite3

from asgiref.sync import sync_to_async
from django.db import connection

import taskmill

from .models import Effect
from .tasks import _record


class SyncFailed(Exception):
    """A task's own error, wrapping the database's (``raise ... from``)."""


def provoke_outage() -> None:
    """The database fails this thread's next statement; raises Django's wrapped error."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    elif connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("KILL CONNECTION CONNECTION_ID()")
    else:
        connection.ensure_connection()
        holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # the write lock, held by someone else
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout = 100")  # wait 0.1 s, not 20
            Effect.objects.create(name="never written")
        finally:
            holder.rollback()
            holder.close()
    raise AssertionError(f"the database ({connection.vendor}) did not fail the statement")


def _attempt(context, kind: str) -> int:
    _record(f"{kind} {context.task_result.id} {context.attempt}")
    return context.attempt


def _outage_then_row(context, kind: str, name: str, outages: int) -> str:
    """The first ``outages`` attempts meet a real outage; a later one writes the row."""
    if _attempt(context, kind) <= outages:
        provoke_outage()
    Effect.objects.create(name=name)
    return name


@taskmill.task(takes_context=True)
def outage_then_row(context, name: str, outages: int) -> str:
    return _outage_then_row(context, "outage", name, outages)


@taskmill.task(takes_context=True, retry_on_database_errors=False)
def outage_no_retry(context, name: str, outages: int) -> str:
    return _outage_then_row(context, "no_retry", name, outages)


@taskmill.task(takes_context=True)
def wrapped_outage(context, name: str, outages: int) -> str:
    """The task wraps the database's error in its own: still the database's fault."""
    if _attempt(context, "wrapped") <= outages:
        try:
            provoke_outage()
        except Exception as exc:
            raise SyncFailed(f"could not sync {name}") from exc
    Effect.objects.create(name=name)
    return name


@taskmill.task(takes_context=True, timeout=60)
def outage_in_child(context, name: str, outages: int) -> str:
    """With a timeout: it runs in a worker's child process, whose outcome travels as JSON."""
    return _outage_then_row(context, "child", name, outages)


@taskmill.task(takes_context=True)
async def async_outage(context, name: str, outages: int) -> str:
    """On the event loop: its ORM calls run on asgiref's thread, whose broken connection the
    next attempt must not meet again."""
    if _attempt(context, "async") <= outages:
        await sync_to_async(provoke_outage)()
    await Effect.objects.acreate(name=name)
    return name


@taskmill.task(takes_context=True, atomic=True)
def atomic_outage(context, name: str, outages: int) -> str:
    """Every try of the first ``outages`` attempts (its transaction is tried again in place)
    meets the outage after writing its row, which the rollback undoes."""
    attempt = _attempt(context, "atomic")
    Effect.objects.create(name=name)
    if attempt <= outages:
        provoke_outage()
    return name


@taskmill.task(takes_context=True, atomic=True, retry_on_database_errors=False)
def atomic_outage_no_retry(context, name: str, outages: int) -> str:
    attempt = _attempt(context, "atomic_no_retry")
    Effect.objects.create(name=name)
    if attempt <= outages:
        provoke_outage()
    return name
