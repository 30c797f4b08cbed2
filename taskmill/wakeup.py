"""Wake-ups: an enqueue wakes the workers running in the same process at once.

Other processes learn about new runs through the engine (LISTEN/NOTIFY) or by polling;
``wake_after_commit`` does both when a run becomes ready.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

_listeners: set[Callable[[str], None]] = set()


def subscribe(callback: Callable[[str], None]) -> None:
    _listeners.add(callback)


def unsubscribe(callback: Callable[[str], None]) -> None:
    _listeners.discard(callback)


def wake_local(queue_name: str) -> None:
    for callback in tuple(_listeners):
        callback(queue_name)


def wake_local_after_commit(database: str, queue_name: str) -> None:
    """Wake this process's workers serving ``queue_name`` once the transaction commits
    (they would claim before the run is visible otherwise); at once outside one."""
    transaction.on_commit(lambda: wake_local(queue_name), using=database)


def wake_after_commit(database: str, queue_name: str) -> None:
    """Wake workers everywhere: this process's at commit, others through the engine
    (NOTIFY on PostgreSQL, delivered at commit too)."""
    from .db import get_engine  # here: the engines import the models, this module does not

    wake_local_after_commit(database, queue_name)
    get_engine(database).notify(queue_name)
