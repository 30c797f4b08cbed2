"""Where an attempt's body runs, and the steps around it that every runner shares.

- a task thread (thread.py): a sync task with no timeout, the fast path;
- a child process (child_process.py): a sync task with a timeout, since Python cannot kill a
  thread and the only way to stop a blocking call is to kill the process running it;
- the event loop (event_loop.py): an async task, which a timeout cancels.

Each takes the attempt through the same steps (attempt.py): prepare, mark the start, send
``task_started``, run the body, and decide the outcome from what it returned or raised.
"""

from __future__ import annotations

import inspect
from typing import Any

from ... import registry
from ...compat import task_started
from ...db import ClaimedRun
from ...limits import starts as rate_starts
from ...signalling import send, started_heard
from ...tasks import effective_option
from ..attempt import Attempt, Completed, ended_unstarted, signal_sender
from .child_process import CHILD_HANDLER, run_in_child
from .event_loop import run_async
from .thread import call_here


def where_to_run(run: ClaimedRun) -> str:
    """ "async" (the event loop), "child" (a sync task with a timeout: a child process) or
    "thread". A run naming no registered task goes to a thread, where Attempt.prepare
    refuses it."""
    task = registry.resolve_or_none(run.task_path)
    if task is None:
        return "thread"
    if inspect.iscoroutinefunction(task.func):
        return "async"
    return "child" if effective_option(task, run.options, "timeout") else "thread"


def run_sync(attempt: Attempt, pool: Any = None) -> Completed:
    """A sync attempt, from a task thread: its body here, or in a child process of ``pool``
    when the task has a timeout and a pool is given."""
    refused = attempt.prepare()
    if refused:
        return refused
    if not rate_starts.begin(attempt.database, attempt.run, attempt.stop_event):
        # Stopped while its rate's start waited for the database, or taken from this
        # worker meanwhile: the body never ran.
        return ended_unstarted(attempt.run, attempt.database)
    attempt.mark_started()  # after its start is written, which may wait for the database
    if started_heard():
        send(task_started, signal_sender(attempt.run), attempt.result)
    timeout = attempt.option("timeout")
    if timeout and pool is not None:
        return run_in_child(attempt, pool, timeout)
    return call_here(attempt)


__all__ = ["CHILD_HANDLER", "run_async", "run_sync", "where_to_run"]
