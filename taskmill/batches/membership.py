"""Which batch an enqueue joins: the one the innermost ``with batch:`` block of this context
holds, or none.

A context variable, not a thread-local: it follows the code that set it into the coroutines
and ``sync_to_async`` calls it starts, and a worker's task threads never see the batch of the
code that enqueued them. Reading it is all that an enqueue outside any batch pays.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Joining:
    """The batch that enqueues of this context join, and how."""

    batch_id: int
    backend: str  # its TASKS alias: members are enqueued through it
    database: str  # where its row and its members' rows live
    # True inside the block that created the batch, before its seal: only that block's own
    # code enqueues there, and the seal counts what it enqueued, so an enqueue needs no lock.
    # False when a batch is re-entered (``with context.batch:``, ``batch.add()``): the batch
    # may be sealed, so each enqueue locks its row and adds to its total.
    opened_here: bool


_joining: ContextVar[Joining | None] = ContextVar("taskmill_batch", default=None)


def current() -> Joining | None:
    """The batch an enqueue made now joins, if any."""
    return _joining.get()


def join(joining: Joining | None) -> Token[Joining | None]:
    """Enqueues of this context join ``joining`` (None: no batch) until ``leave``."""
    return _joining.set(joining)


def leave(token: Token[Joining | None]) -> None:
    _joining.reset(token)


@contextmanager
def outside_batch() -> Iterator[None]:
    """Enqueues inside join no batch: callbacks enqueued when a run or a batch ends belong to
    none, even when the code that drives a worker in-process (``run_queued()``) is in one."""
    token = _joining.set(None)
    try:
        yield
    finally:
        _joining.reset(token)
