"""taskmill's log lines as data: the attributes its records carry, a JSON formatter, and the
worker's id on every line a worker process writes.

A log pipeline (Loki, Elasticsearch, CloudWatch, journald's JSON export) reads one object per
line; a text line followed by a traceback is many lines, and a run id inside a sentence must
be parsed back out. So the lines about a run carry its fields on the record itself, through
``extra=``, under the attribute names below: ``JSONFormatter`` writes them under short keys,
and a project's own formatter can name them too (``%(taskmill_run_id)s``).

``taskmill worker --log-format json`` (or ``TASKMILL_LOG_FORMAT = "json"``) puts this
formatter on the handler taskmill installs when the project's ``LOGGING`` does not handle
its loggers; a project that does handle them puts ``taskmill.logs.JSONFormatter`` in its own
``LOGGING`` (docs/worker.md#logs).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .db import ClaimedRun

# The record attributes taskmill sets (documented in docs/worker.md#logs: they are API).
# Prefixed, so that they never collide with a project's own ``extra=`` names.
WORKER = "taskmill_worker"  # the worker's id, on every record of a worker process
RUN_ID = "taskmill_run_id"  # on the lines about one run...
TASK = "taskmill_task"
ATTEMPT = "taskmill_attempt"
QUEUE = "taskmill_queue"
OUTCOME = "taskmill_outcome"  # ...and about an attempt that ended: SUCCESSFUL, FAILED,
DURATION = "taskmill_duration"  # CANCELLED, READY (a retry), SNOOZED; seconds it ran
# A failed attempt's traceback, as stored with the run: on its record whatever the level, as
# a text line shows it only at DEBUG (``-v 2``) while a JSON line holds it at no cost.
TRACEBACK = "taskmill_traceback"

# The keys JSONFormatter writes them under, in this order, after time, level, logger and
# message.
JSON_KEYS = {
    WORKER: "worker",
    RUN_ID: "run_id",
    TASK: "task",
    ATTEMPT: "attempt",
    QUEUE: "queue",
    OUTCOME: "outcome",
    DURATION: "duration",
}

# What the option and the setting accept.
LOG_FORMATS = ("text", "json")
SETTING = "TASKMILL_LOG_FORMAT"

# Every attribute a bare LogRecord has, and those formatters add to one: anything else on
# a record came through ``extra=`` (or a filter) and is written too.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime"}


def run_fields(run: ClaimedRun, **more: Any) -> dict[str, Any]:
    """The ``extra=`` of a line about ``run`` (and ``more`` of the names above)."""
    return {
        RUN_ID: run.id,
        TASK: run.task_path,
        ATTEMPT: run.attempt,
        QUEUE: run.queue_name,
        **more,
    }


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC, milliseconds),
    ``level``, ``logger``, ``message``, taskmill's fields when the record has them (``worker``,
    ``run_id``, ``task``, ``attempt``, ``queue``, ``outcome``, ``duration``), any other
    ``extra=`` attribute under its own name, and ``exception`` (a traceback) and ``stack``
    when there is one. A format string given to it is not used: the message is the message.

    Non-ASCII text is escaped (``\\u00e9``): a line is then ASCII whatever it holds, and
    writes on any stream, a lone surrogate from a task's exception included.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        attributes = record.__dict__
        for attribute, key in JSON_KEYS.items():
            value = attributes.get(attribute)
            if value is not None:
                entry[key] = value
        for attribute, value in attributes.items():
            if (
                attribute not in _RECORD_ATTRIBUTES
                and attribute not in JSON_KEYS
                and attribute != TRACEBACK
                and not attribute.startswith("_")
            ):
                entry.setdefault(attribute, value)
        exception = self._exception(record)
        if exception:
            entry["exception"] = exception
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an ``extra=`` value JSON cannot hold is written as its text, not
        # dropped with the whole line.
        return json.dumps(entry, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """UTC, to the millisecond, whatever ``datefmt`` says: lines from machines in other
        time zones sort together."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"

    def _exception(self, record: logging.LogRecord) -> str | None:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # cached, as Formatter does
        if record.exc_text:
            return record.exc_text
        traceback = getattr(record, TRACEBACK, None)
        return traceback.rstrip() if traceback else None


class WorkerFilter(logging.Filter):
    """Puts this process's worker id on every record it passes (``taskmill_worker``), unless
    the record has one: a handler with this filter marks every line a worker process writes
    through it, whichever logger wrote it (the project's, a task's, Django's).

    The worker command installs it on the handlers configured when it starts
    (``identify_worker``); a project may name it in its ``LOGGING`` filters too
    (``{"()": "taskmill.logs.WorkerFilter"}``), for handlers it adds later. Outside a worker
    process it adds nothing.
    """

    worker_id: ClassVar[str | None] = None  # one worker per process

    def filter(self, record: logging.LogRecord) -> bool:
        worker_id = WorkerFilter.worker_id
        if worker_id is not None:
            record.__dict__.setdefault(WORKER, worker_id)
        return True


def identify_worker(worker_id: str) -> None:
    """This process is the worker ``worker_id``: say so on every line it writes from now on.

    A filter on each handler, not on the loggers: a logger's filters see only the records
    logged on that very logger, never those that propagate to it from below
    (``taskmill.worker`` to ``taskmill``, ``myapp.tasks`` to the root).
    """
    WorkerFilter.worker_id = worker_id
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    handlers = [handler for logger in loggers for handler in logger.handlers]
    if logging.lastResort is not None:  # what takes the records no handler takes
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(each, WorkerFilter) for each in handler.filters):
            handler.addFilter(WorkerFilter())


def log_format_setting() -> str:
    """``TASKMILL_LOG_FORMAT``, or ValueError naming it and what it may be."""
    from .conf import setting

    value = setting(SETTING)
    if value not in LOG_FORMATS:
        allowed = " or ".join(repr(name) for name in LOG_FORMATS)
        raise ValueError(f"{SETTING} must be {allowed}, not {value!r}.")
    return value


def check_log_format(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The system check of ``TASKMILL_LOG_FORMAT`` (``taskmill.E010``): a typo is said by
    ``manage.py check`` too, not only by the worker that refuses to start over it."""
    from django.core import checks

    try:
        log_format_setting()
    except ValueError as exc:
        return [
            checks.Error(
                str(exc),
                hint="'json' writes one JSON object per line (docs/worker.md#logs).",
                id="taskmill.E010",
            )
        ]
    return []


__all__ = [
    "ATTEMPT",
    "DURATION",
    "JSON_KEYS",
    "LOG_FORMATS",
    "OUTCOME",
    "QUEUE",
    "RUN_ID",
    "TASK",
    "TRACEBACK",
    "WORKER",
    "JSONFormatter",
    "WorkerFilter",
    "check_log_format",
    "identify_worker",
    "log_format_setting",
    "run_fields",
]
