"""Queue limits: limits that every run of a queue shares, whichever task it is ("at most 5
calls into the ERP at once").

The backend's ``OPTIONS["QUEUE_LIMITS"] = {"erp": {"concurrency_limit": 5, "rate_limit":
"100/m"}}`` gives the defaults; ``set_queue_limits`` (and the admin's Queues page) changes them
at run time for every worker, in the ``Queue`` row, which then wins over the settings until
``set_queue_limits(name, reset=True)``. Workers learn of a change within
``REFRESH_SECONDS`` (a queue that has just become limited); a limit's value itself is read
from the locked row by every gate.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..compat import InvalidTask
from .rates import Rate, parse_rate

REFRESH_SECONDS = 2.0
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class QueueLimits:
    concurrency_limit: int | None = None
    rate: Rate | None = None

    @property
    def any(self) -> bool:
        return self.concurrency_limit is not None or self.rate is not None


def parse_queue_limits(where: str, value: Any) -> dict[str, QueueLimits]:
    """``OPTIONS["QUEUE_LIMITS"]`` checked: queue name -> its limits."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{where} QUEUE_LIMITS must be a dict of queue name -> limits.")
    limits = {}
    for queue, options in value.items():
        if not isinstance(options, dict) or set(options) - {"concurrency_limit", "rate_limit"}:
            raise ImproperlyConfigured(
                f"{where} QUEUE_LIMITS[{queue!r}] takes concurrency_limit and rate_limit, "
                f"not {options!r}."
            )
        try:
            limits[queue] = QueueLimits(
                _concurrency(options.get("concurrency_limit")),
                parse_rate(options.get("rate_limit")),
            )
        except InvalidTask as exc:
            raise ImproperlyConfigured(f"{where} QUEUE_LIMITS[{queue!r}]: {exc}") from None
    return limits


def _concurrency(value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InvalidTask(f"concurrency_limit must be an integer >= 1, not {value!r}.")
    return value


def configured_limits(database: str) -> dict[str, QueueLimits]:
    """The settings' queue limits of every taskmill backend whose runs live in ``database``."""
    from ..backend import stores_runs_in  # the backend imports much of taskmill
    from ..compat import task_backends

    limits: dict[str, QueueLimits] = {}
    for backend in task_backends.all():
        if stores_runs_in(backend, database):
            limits.update(backend.queue_limits)
    return limits


def row_limits(row: Any, configured: dict[str, QueueLimits]) -> QueueLimits:
    """A queue's limits in force: set at run time in its row, else the settings'."""
    if row is not None and row.limits_set_at is not None:
        return QueueLimits(row.concurrency_limit, parse_rate(row.rate_limit))
    return configured.get(getattr(row, "name", ""), QueueLimits())


class _Limited:
    """Which queues have limits, as a worker sees them: the settings', and the rows set at
    run time, read again every REFRESH_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, frozenset[str]]] = {}

    def queues(self, database: str) -> frozenset[str]:
        now = time.monotonic()
        seen = self._seen.get(database)
        if seen is not None and now - seen[0] < REFRESH_SECONDS:
            return seen[1]
        with self._lock:
            names = frozenset(self._read(database))
            self._seen[database] = (now, names)
            return names

    def known(self, database: str) -> frozenset[str]:
        """What ``queues`` last read, without reading again: for an event loop, which must
        not touch the database (the worker's loop keeps it fresh)."""
        seen = self._seen.get(database)
        return seen[1] if seen is not None else frozenset()

    def forget(self) -> None:
        self._seen.clear()

    @staticmethod
    def _read(database: str) -> set[str]:
        from ..models import Queue

        configured = configured_limits(database)
        names = {name for name, limits in configured.items() if limits.any}
        for row in Queue.objects.using(database).exclude(limits_set_at=None):
            if row_limits(row, configured).any:
                names.add(row.name)
            else:
                names.discard(row.name)
        return names


limited = _Limited()


def set_queue_limits(
    queue: str,
    *,
    concurrency_limit: int | None = _UNSET,
    rate_limit: str | Rate | None = _UNSET,
    reset: bool = False,
    database: str = "default",
) -> QueueLimits:
    """Change a queue's limits at run time, for every worker; return the limits now in force.

    Arguments left out keep their value; ``None`` removes that limit; ``reset=True`` goes
    back to the settings' ``QUEUE_LIMITS``. A raised limit lets held-back runs go at once, in
    this transaction; a lowered one lets running runs finish and starts no more than it
    allows.
    """
    from .control import change_queue_limits  # the models: not before the app registry

    return change_queue_limits(
        database,
        queue,
        concurrency_limit=None if concurrency_limit is _UNSET else _concurrency(concurrency_limit),
        rate=None if rate_limit is _UNSET else parse_rate(rate_limit),
        keep_concurrency=concurrency_limit is _UNSET,
        keep_rate=rate_limit is _UNSET,
        reset=reset,
    )
