"""Whether sending one of the task signals would reach anyone.

Building the ``TaskResult`` a signal carries is most of what a no-op task costs a worker.
The tasks framework connects its own logging receivers to the three signals; when those are
the only receivers and their logger is off at the level they log at, sending would do
nothing, and the worker skips building the result. Any receiver of the project's own (or
the logger switched on) and the signal is sent as always.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from functools import cache
from typing import Any

from .compat import TASKS_FRAMEWORK, task_enqueued, task_finished, task_started


@cache
def _framework() -> tuple[logging.Logger, dict[Any, str]]:
    """The framework's logger and its logging receivers, by signal name."""
    module = importlib.import_module(f"{TASKS_FRAMEWORK}.signals")
    receivers = {}
    for name in ("log_task_enqueued", "log_task_started", "log_task_finished"):
        receiver = getattr(module, name, None)
        if receiver is not None:
            receivers[receiver] = name
    return getattr(module, "logger", logging.getLogger(TASKS_FRAMEWORK)), receivers


def heard(signal: Any, level: int) -> bool:
    """Whether sending ``signal`` reaches a receiver that does something: one of the
    project's, or the framework's logging receiver with its logger enabled at ``level``."""
    logger, framework_receivers = _framework()
    for entry in signal.receivers:
        receiver = entry[1]
        if isinstance(receiver, weakref.ReferenceType):
            receiver = receiver()
            if receiver is None:
                continue
        if receiver not in framework_receivers or logger.isEnabledFor(level):
            return True
    return False


def started_heard() -> bool:
    return heard(task_started, logging.INFO)


def finished_heard(failed: bool) -> bool:
    return heard(task_finished, logging.ERROR if failed else logging.INFO)


def enqueued_heard() -> bool:
    return heard(task_enqueued, logging.DEBUG)
