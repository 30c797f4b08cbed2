"""taskmill's settings: flat ``TASKMILL_*`` names in the project's settings, with defaults.

Read at the moment they are needed (not cached at import), so tests can override them;
remembered until a setting changes (Django's ``setting_changed``, which ``override_settings``
and pytest-django send): the worker reads some for every run, and a missing attribute of
Django's lazy settings costs microseconds each time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Retries: delay = uniform(0, min(cap, base * 2 ** (failures - 1))) seconds.
    "TASKMILL_RETRY_BACKOFF_BASE": 1.0,
    "TASKMILL_RETRY_BACKOFF_CAP": 300.0,
    # Leases: a worker renews the leases of its runs every HEARTBEAT seconds; a run whose
    # lease (LEASE seconds) ran out is rescued by any live worker, which looks every
    # RESCUE_INTERVAL seconds. LEASE must exceed the worst pause you expect plus a few
    # heartbeats.
    "TASKMILL_HEARTBEAT_INTERVAL": 10.0,
    "TASKMILL_LEASE": 60.0,
    "TASKMILL_RESCUE_INTERVAL": 5.0,
    # A run whose worker was lost this many times fails ("worker lost") instead of
    # running again: a task that crashes its worker must not loop forever.
    "TASKMILL_MAX_LOST_ATTEMPTS": 3,
    # Hard timeouts: after SIGTERM, how long a task's process has before SIGKILL.
    "TASKMILL_TIMEOUT_GRACE": 3.0,
    # Finished runs are deleted this long after they finish (None: kept); per task:
    # result_ttl. Workers prune every PRUNE_INTERVAL seconds, PRUNE_BATCH rows at a time.
    "TASKMILL_RESULT_TTL": None,
    "TASKMILL_PRUNE_INTERVAL": 60.0,
    "TASKMILL_PRUNE_BATCH": 500,
    # How long the per-minute rollups behind the dashboard's charts are kept (seconds).
    "TASKMILL_STATS_RETENTION": 8 * 24 * 3600,
    # The admin: keyword arguments (at any depth) shown as "********", and a hook
    # "module.function(run, args, kwargs) -> (args, kwargs)" for anything else to hide.
    "TASKMILL_ADMIN_MASKED_KEYS": ("password", "secret", "token", "api_key", "authorization"),
    "TASKMILL_ADMIN_MASK": None,
    # Worker middleware: import paths of factories wrapping every attempt, outermost first
    # (taskmill.middleware).
    "TASKMILL_MIDDLEWARE": (),
    # The control room, taskmill status and the metrics count each state's runs (ready,
    # waiting...) up to this many, then show "more than" (taskmill.overview): a backlog of a
    # million READY runs in an outage must not slow the pages an operator opens for it. Each
    # count reads up to this many rows: at 100,000 the dashboard's counts took 0.35-0.45 s
    # per statement on a loaded PostgreSQL, at 10,000 56-110 ms (docs/performance.md).
    "TASKMILL_COUNT_CAP": 10_000,
    # Sent by a Prometheus scraper as "Authorization: Bearer <token>" (None: no check).
    "TASKMILL_METRICS_TOKEN": None,
    # The format of the log lines taskmill's commands write themselves (when the project's
    # LOGGING does not handle taskmill's loggers): "text", or "json", one object per line.
    "TASKMILL_LOG_FORMAT": "text",
}


_read: dict[str, Any] = {}


def setting(name: str) -> Any:
    try:
        return _read[name]
    except KeyError:
        value = _read[name] = getattr(settings, name, DEFAULTS[name])
        return value


def _forget_settings(**kwargs: Any) -> None:
    _read.clear()


setting_changed.connect(_forget_settings, dispatch_uid="taskmill.conf.forget_settings")


def seconds(value: float | int | timedelta | None) -> float | None:
    """A duration given as seconds or a timedelta, as seconds."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)
