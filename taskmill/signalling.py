"""Sending the three task signals: whether it would reach anyone, and to whom.

Building the ``TaskResult`` a signal carries is most of what a no-op task costs a worker.
The tasks framework connects its own logging receivers to the three signals; when those are
the only receivers and their logger is off at the level they log at, sending would do
nothing, and the worker skips building the result. Any receiver of the project's own (or
the logger switched on) and the signal is sent as always.

On Django 6.0+ a project may have the ``django-tasks`` backport installed as well (Wagtail
imports ``django_tasks`` whatever the Django), and connect receivers to the backport's
signals: other ``Signal`` objects than Django's, which no backend of Django's sends. So every
signal taskmill sends goes to Django's signal and then to the backport's of the same name,
each once; only when ``django_tasks.signals`` is imported (``compat.imported_backport``).
"""

from __future__ import annotations

import logging
import sys
import weakref
from functools import cache
from typing import Any

from .compat import (
    TASKS_FRAMEWORK,
    imported_backport,
    task_enqueued,
    task_finished,
    task_started,
)

_NAMES = {
    task_enqueued: "task_enqueued",
    task_started: "task_started",
    task_finished: "task_finished",
}


@cache
def _logging_of(module_name: str) -> tuple[logging.Logger, dict[Any, str]]:
    """A framework's logger and its logging receivers, by signal name (the framework's
    ``signals`` module is imported by then: its caller found it in ``sys.modules``)."""
    module = sys.modules[module_name]
    receivers = {}
    for name in ("log_task_enqueued", "log_task_started", "log_task_finished"):
        receiver = getattr(module, name, None)
        if receiver is not None:
            receivers[receiver] = name
    package = module_name.rpartition(".")[0]
    return getattr(module, "logger", logging.getLogger(package)), receivers


def signals_of(signal: Any) -> list[tuple[Any, str]]:
    """``signal`` (one of the framework's three) and, when the backport's signals module is
    imported on a Django with its own, the backport's signal of that name: each with the
    module it belongs to."""
    found = [(signal, f"{TASKS_FRAMEWORK}.signals")]
    backport = imported_backport("signals")
    if backport is not None:
        found.append((getattr(backport, _NAMES[signal]), backport.__name__))
    return found


def _heard_one(signal: Any, module_name: str, level: int) -> bool:
    logger, framework_receivers = _logging_of(module_name)
    for entry in signal.receivers:
        receiver = entry[1]
        if isinstance(receiver, weakref.ReferenceType):
            receiver = receiver()
            if receiver is None:
                continue
        if receiver not in framework_receivers or logger.isEnabledFor(level):
            return True
    return False


def heard(signal: Any, level: int) -> bool:
    """Whether sending ``signal`` reaches a receiver that does something: one of the
    project's, or a framework's logging receiver with its logger enabled at ``level``."""
    return any(_heard_one(each, module, level) for each, module in signals_of(signal))


def send(signal: Any, sender: type, task_result: Any) -> None:
    """Send ``signal`` (one of the framework's three) and the backport's of the same name.
    A receiver that raises stops the sending, as ``Signal.send`` does with one signal."""
    for each, _ in signals_of(signal):
        each.send(sender, task_result=task_result)


async def asend(signal: Any, sender: type, task_result: Any) -> None:
    """``send`` from the event loop: async receivers are awaited there."""
    for each, _ in signals_of(signal):
        await each.asend(sender, task_result=task_result)


def started_heard() -> bool:
    return heard(task_started, logging.INFO)


def finished_heard(failed: bool) -> bool:
    return heard(task_finished, logging.ERROR if failed else logging.INFO)


def enqueued_heard() -> bool:
    return heard(task_enqueued, logging.DEBUG)
