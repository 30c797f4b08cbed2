"""Tasks for the batch and pipeline tests (tests/batches/): members, members that add members,
callbacks that record what the batch said when they ran, and pipeline steps that pass on what
their dependencies returned."""

from __future__ import annotations

import os
import time
from pathlib import Path

import taskmill


def _record(line: str) -> None:
    directory = os.environ.get("TASKMILL_TEST_RECORD_DIR")
    if directory:
        with open(Path(directory) / f"batches-{os.getpid()}.log", "a") as log:
            log.write(line + "\n")


@taskmill.task
def member(index: int) -> int:
    return index


@taskmill.task
def member_waiting_for(path: str, index: int = 0) -> int:
    """Stays RUNNING until ``path`` exists: members released together, on several workers."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.005)
    return index


def _callback(kind: str, batch_id: str) -> str:
    batch = taskmill.get_batch(batch_id)
    _record(
        f"{kind} {batch_id} total={batch.total} succeeded={batch.succeeded} "
        f"failed={batch.failed} cancelled={batch.cancelled} pending={batch.pending} "
        f"finished={batch.finished_at is not None}"
    )
    return kind


@taskmill.task
def on_finish(batch_id: str) -> str:
    return _callback("finish", batch_id)


@taskmill.task
def on_success(batch_id: str) -> str:
    return _callback("success", batch_id)


@taskmill.task
def on_failure(batch_id: str) -> str:
    return _callback("failure", batch_id)


@taskmill.task(takes_context=True)
def adds_members(context, path: str, count: int) -> int:
    """A member that adds ``count`` members waiting for ``path``: half through
    ``context.batch.add()``, half by enqueueing inside ``with context.batch:``."""
    batch = context.batch
    for index in range(count // 2):
        batch.add(member_waiting_for, path, index)
    with context.batch:
        for index in range(count // 2, count):
            member_waiting_for.enqueue(path, index)
    return count


@taskmill.task(takes_context=True)
def which_batch(context) -> int | None:
    """Returns its batch's id (None outside any), as the context reads it."""
    batch = context.batch
    return None if batch is None else batch.pk


@taskmill.task(takes_context=True)
def step(context, name: str) -> dict:
    """A pipeline step: returns its name and, in order, what its dependencies returned."""
    got = [[key, value] for key, value in context.dependency_results.items()]
    return {"name": name, "got": got}


@taskmill.task(takes_context=True)
async def async_step(context, name: str) -> dict:
    results = await context.aget_dependency_results()
    batch = await context.aget_batch()
    return {"name": name, "got": list(results.values()), "batch": batch and batch.pk}


@taskmill.task
def fails(message: str = "no") -> None:
    raise ValueError(message)
