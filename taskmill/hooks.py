"""Hooks into the enqueue, for integrations (taskmill.contrib.opentelemetry): code that
must see a run before it is stored, and again once it has its id.

An enqueue hook is a callable ``hook(task, runs)`` returning a context manager: it is
entered before ``runs`` (``taskmill.db.NewRun``, all of ``task``, not yet inserted) are
inserted and left after the insert, when each run has its ``pk``, or with the insert's
exception. Before the insert it may change what the runs store: their metadata is
``run.extra["metadata"]`` (absent for none). A tracing span opened on entry times the insert
and can name the new run ids before it ends, which is why a hook is a context manager and
not a function called once.

Hooks run inside the caller's transaction when there is one (an insert rolled back later
was still traced: its hook cannot know). With no hook (the default) an enqueue pays one
check of an empty list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .db import NewRun

EnqueueHook = Callable[[Any, list["NewRun"]], AbstractContextManager[Any]]

_enqueue_hooks: list[EnqueueHook] = []
_NOTHING = nullcontext()  # reusable: what an enqueue enters when there is no hook


def add_enqueue_hook(hook: EnqueueHook) -> None:
    """Call ``hook`` around every enqueue's insert from now on (once, however often added)."""
    if hook not in _enqueue_hooks:
        _enqueue_hooks.append(hook)


def remove_enqueue_hook(hook: EnqueueHook) -> None:
    """Stop calling ``hook`` (nothing happens if it was not added)."""
    if hook in _enqueue_hooks:
        _enqueue_hooks.remove(hook)


def enqueueing(task: Any, runs: list[NewRun]) -> AbstractContextManager[Any]:
    """What the backend enters around its insert of ``runs``: every hook's, in the order
    added (the first entered first, left last)."""
    if not _enqueue_hooks:
        return _NOTHING
    return _entered(task, runs, list(_enqueue_hooks))


@contextmanager
def _entered(task: Any, runs: list[NewRun], hooks: list[EnqueueHook]) -> Iterator[None]:
    # An ExitStack leaves the hooks already entered when a later one fails to enter.
    with ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook(task, runs))
        yield


__all__ = ["EnqueueHook", "add_enqueue_hook", "enqueueing", "remove_enqueue_hook"]
