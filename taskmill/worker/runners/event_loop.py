"""An async task's body, on the worker's event loop: a timeout cancels it, and so does a
stop request (the executor cancels its future)."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async

from ...compat import task_started
from ...exceptions import RunCancelled, TaskTimeout
from ...limits import starts as rate_starts
from ...signalling import asend, started_heard
from ..attempt import Attempt, Completed, ended_unstarted, signal_sender
from ..failures import chained
from ..interruptions import close_async_connections


async def run_async(attempt: Attempt) -> Completed:
    refused = attempt.prepare()
    if refused:
        return refused
    if rate_starts.counts_starts(attempt.run):
        begun = await sync_to_async(rate_starts.begin)(
            attempt.database, attempt.run, attempt.stop_event
        )
        if not begun:  # stopped while its start waited, or taken away: nothing ran
            return ended_unstarted(attempt.run, attempt.database)
    attempt.mark_started()
    if started_heard():
        await asend(task_started, signal_sender(attempt.run), attempt.result)
    args, kwargs = attempt.arguments()
    timeout = attempt.option("timeout")
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            value = await attempt.acall(args, kwargs)
    except TimeoutError as exc:
        if limit.expired():
            exc = chained(
                TaskTimeout(f"Task {attempt.run.task_path} ran past its timeout of {timeout:g}s"),
                exc,
            )
        return attempt.failed(exc, attempt.duration())
    except asyncio.CancelledError as exc:
        if attempt.stop_was_requested():
            return attempt.failed(RunCancelled("stopped on request while running"), 0.0)
        if asyncio.current_task().cancelling():
            raise
        return attempt.failed(exc, attempt.duration())
    except BaseException as exc:
        await close_async_connections(exc)
        return attempt.failed(exc, attempt.duration())
    return attempt.succeeded(value, attempt.duration())


__all__ = ["run_async"]
