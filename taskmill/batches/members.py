"""Enqueueing members: the runs of a ``with batch:`` block carry the batch's id; a run that adds
members to a batch already open (``context.batch.add()``, ``with context.batch:``) does it
under the batch's lock, so the batch cannot finish in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import registry
from ..compat import BaseTask, InvalidTask, TaskResult
from ..exceptions import BatchFinished
from ..followups import lock_dependencies
from ..models import Batch
from .membership import Joining
from .settle import locked_batch

if TYPE_CHECKING:
    from ..backend import DatabaseBackend
    from ..tasks import Call, Task


def enqueue_members(
    backend: DatabaseBackend, task: Task, calls: Sequence[Call], joining: Joining
) -> list[TaskResult]:
    """Enqueue ``calls`` of ``task`` as members of the batch ``joining`` names."""
    if backend.alias != joining.backend:
        raise InvalidTask(
            f"{task.module_path} enqueues through backend {backend.alias!r}, but batch "
            f"{joining.batch_id} is on backend {joining.backend!r}: a batch's members are "
            "enqueued through its backend (taskmill.batch(backend=...))."
        )
    if joining.opened_here:
        # The block that opened the batch: its seal counts these runs, no lock needed.
        runs = backend.new_runs(task, calls, now=timezone.now(), batch_id=joining.batch_id)
        return backend.save_new_runs(task, runs)
    with transaction.atomic(using=joining.database):
        if task.depends_on:
            # The runs it depends on first, then the batch: the order in which the finish of
            # one of them (a member too, perhaps) takes its row and then the batch's.
            lock_dependencies(joining.database, task.depends_on)
        batch = locked_batch(joining.database, joining.batch_id)
        if batch is None:
            raise BatchFinished(f"Batch {joining.batch_id} no longer exists; nothing enqueued.")
        if batch.finished_at is not None:
            raise BatchFinished(
                f"Batch {batch.pk} finished at {batch.finished_at.isoformat()} (its callbacks "
                f"were enqueued): {task.module_path} cannot join it; nothing enqueued."
            )
        runs = backend.new_runs(task, calls, now=timezone.now(), batch_id=batch.pk)
        results = backend.save_new_runs(task, runs)
        if batch.sealed:
            # Not a count of the members: those that ended may have been pruned already.
            # A unique run that met an existing one returned that one, not a new member.
            added = sum(
                1
                for run, result in zip(runs, results, strict=True)
                if run.pk is not None and result.id == str(run.pk)
            )
            if added:
                Batch.objects.using(joining.database).filter(pk=batch.pk).update(
                    total=F("total") + added
                )
    return results


def add(batch: Batch, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> TaskResult:
    """``batch.add(task, *args, **kwargs)``: enqueue one more member (the batch must not have
    finished). ``task`` is a task or its import path."""
    if batch.pk is None:
        raise InvalidTask("add() adds to a batch that exists: open it first (with batch: ...).")
    if isinstance(task, str):
        task = registry.resolve(task)
    elif not isinstance(task, BaseTask):
        raise InvalidTask(f"add() takes a task or its import path, not {task!r}.")
    with batch:
        return task.enqueue(*args, **kwargs)
