"""The body on this thread: a task thread's, or a child process's main thread's (the child
runs the attempt the same way, once the worker sent it there)."""

from __future__ import annotations

import threading
import time

from django.db import close_old_connections

from ..attempt import Attempt, Completed
from .atomic import ResultNotStorable, call_atomic_retrying

# When this thread last closed its broken or expired connections (after its last task).
_tidied = threading.local()
# A thread idle longer than this tidies its connections again before the next task: one
# may have passed CONN_MAX_AGE meanwhile. Tasks in quick succession rely on the tidying
# done after the previous one (Django's request cycle does both; it costs a few us each).
TIDY_AFTER_IDLE = 1.0


def _tidy_connections_after_idle() -> None:
    if time.monotonic() - getattr(_tidied, "at", -TIDY_AFTER_IDLE) >= TIDY_AFTER_IDLE:
        close_old_connections()


def call_here(attempt: Attempt) -> Completed:
    """Call the task on this thread (a task thread, or a child process's main thread)."""
    _tidy_connections_after_idle()
    attempt.mark_started()  # in a child process: its own start, not the worker's
    try:
        if getattr(attempt.task, "atomic", False):
            return call_atomic_retrying(attempt)
        args, kwargs = attempt.arguments()
        value = attempt.call(args, kwargs)
    except ResultNotStorable as exc:
        return exc.completed
    except BaseException as exc:
        return attempt.failed(exc, attempt.duration())
    finally:
        close_old_connections()
        _tidied.at = time.monotonic()
    return attempt.succeeded(value, attempt.duration())


__all__ = ["call_here"]
