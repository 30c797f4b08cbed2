"""Opening and sealing a batch: ``taskmill.batch(...)`` checks what it is given and returns the
unsaved row; ``with batch:`` creates the row and makes enqueues join it; the end of the block
seals it.

While a batch is not sealed it cannot finish, however many of its members have ended: the
code in the block may still enqueue more. The seal counts the members in one transaction
under the batch's lock, and finishes the batch at once if they have all ended already (the
members ran faster than the block enqueued them).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import registry
from ..compat import DEFAULT_TASK_BACKEND_ALIAS, BaseTask, InvalidTask, task_backends
from ..db.errors import retried
from ..models import Batch, Run
from . import membership
from .settle import finish, locked_batch

logger = logging.getLogger("taskmill")

CALLBACKS = ("on_finish", "on_success", "on_failure")
# How often the seal is tried before its error is raised. MariaDB picked it as a deadlock's
# victim three times in a row while four workers settled a thousand members (CI): the
# lightest transaction loses, and the members' ends go on until the batch's last.
SEAL_TRIES = 12
MAX_DESCRIPTION_LENGTH = Batch._meta.get_field("description").max_length


def batch(
    *,
    on_finish: Any = None,
    on_success: Any = None,
    on_failure: Any = None,
    description: str = "",
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
) -> Batch:
    """A batch of runs: ``with taskmill.batch(on_finish=notify) as batch:`` makes the runs
    enqueued in the block its members; when the last of them has ended, ``on_finish`` is
    enqueued, then ``on_success`` if every member succeeded, else ``on_failure``. Each
    callback is a registered task (or its import path) and gets the batch id (a string) as
    its one argument.

    Returns the batch, not saved yet: entering the ``with`` block creates its row.
    """
    database = database_of(backend)
    if not isinstance(description, str):
        raise InvalidTask(f"A batch's description must be a string, not {description!r}.")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidTask(
            f"A batch's description is longer than {MAX_DESCRIPTION_LENGTH} characters."
        )
    given = {"on_finish": on_finish, "on_success": on_success, "on_failure": on_failure}
    paths = {name: _callback_path(name, value, database) for name, value in given.items()}
    return Batch(description=description, backend=backend, **paths)


def get_batch(batch_id: Any, *, database: str = "default") -> Batch:
    """The batch with this id (``batch.id``, or the string a callback is given); raises
    ``Batch.DoesNotExist`` if there is none."""
    try:
        pk = int(batch_id)
    except (TypeError, ValueError):
        raise Batch.DoesNotExist(f"No batch has the id {batch_id!r}.") from None
    return Batch.objects.using(database).get(pk=pk)


def database_of(backend: str) -> str:
    """The database holding the runs of the TASKS alias ``backend`` (a taskmill backend)."""
    try:
        found = task_backends[backend]
    except Exception as exc:  # Django raises InvalidTaskBackend, the backport its own
        raise InvalidTask(f"A batch's backend {backend!r} is not in TASKS: {exc}") from None
    database = getattr(found, "database", None)
    if database is None or not hasattr(found, "new_runs"):
        raise InvalidTask(
            f"A batch's backend {backend!r} is {type(found).__qualname__}; batches need "
            "taskmill's DatabaseBackend, which stores runs and batches in the database."
        )
    return database


def _callback_path(name: str, value: Any, database: str) -> str:
    """The import path of a callback, checked now: a mistake must not wait for the batch's end."""
    if value is None:
        return ""
    if isinstance(value, BaseTask):
        path = value.module_path
    elif isinstance(value, str) and "." in value:
        path = value
    else:
        raise InvalidTask(f"{name} must be a task or its import path, not {value!r}.")
    try:
        callback = registry.resolve(path)
    except InvalidTask as exc:
        raise InvalidTask(f"{name}: {exc}") from None
    # The callback is enqueued in the transaction that ends the batch: in another database,
    # a crash could end the batch without it (or the other way round).
    if database_of(callback.backend) != database:
        raise InvalidTask(
            f"{name}: {path} enqueues through backend {callback.backend!r}, whose runs are not "
            f"in the batch's database {database!r}; a batch's callbacks are enqueued in the "
            "transaction that ends it, so they must be in its database."
        )
    return path


# -- the with block -----------------------------------------------------------------------------


def enter(batch: Batch) -> Batch:
    """Make the enqueues of this context join ``batch``: a new one is created now (and
    sealed at the end of the block); an existing one is re-entered (no seal at the end)."""
    database = database_of(batch.backend)
    opened_here = batch.pk is None
    if opened_here:
        batch.created_at = timezone.now()
        batch.sealed = False
        batch.save(using=database, force_insert=True)
    token = membership.join(membership.Joining(batch.pk, batch.backend, database, opened_here))
    _blocks(batch).append((token, opened_here))
    return batch


def exit_(batch: Batch, raised: BaseException | None) -> None:
    """Leave the block; seal the batch if the block created it. The batch is sealed even
    when the block raised: the members enqueued before that will run, and must end it."""
    token, opened_here = _blocks(batch).pop()
    membership.leave(token)
    if not opened_here:
        return
    try:
        seal(batch)
    except Exception:
        if raised is None:
            raise
        # The block's own error says what went wrong; the seal's failure is likely its
        # consequence (a transaction that broke). Its members end nothing while it is open.
        logger.exception("Batch %s could not be sealed after its block raised", batch.pk)


def _blocks(batch: Batch) -> list[tuple[Any, bool]]:
    """The ``with`` blocks open on this instance, innermost last (a block may be re-entered
    inside itself)."""
    blocks = batch.__dict__.get("_taskmill_blocks")
    if blocks is None:
        blocks = batch.__dict__["_taskmill_blocks"] = []
    return blocks


def seal(batch: Batch) -> None:
    """Count the members and seal: from now on the batch finishes when none is pending.

    Under the batch's lock, so a member adding members meanwhile (which takes the same lock)
    is either counted here or adds itself to the sealed total. Tried again when the database
    fails it for a passing reason (MariaDB may pick it as a deadlock's victim while workers
    settle its members): an unsealed batch never finishes."""
    database = database_of(batch.backend)
    row = retried(lambda: _seal(database, batch.pk), database, tries=SEAL_TRIES)
    for field in Batch._meta.concrete_fields:
        setattr(batch, field.attname, getattr(row, field.attname))


def _seal(database: str, batch_id: int) -> Batch:
    with transaction.atomic(using=database):
        row = locked_batch(database, batch_id)
        if row is None:
            raise Batch.DoesNotExist(f"Batch {batch_id} was deleted before it was sealed.")
        if not row.sealed:
            row.total = Run.objects.using(database).filter(batch_id=row.pk).count()
            row.sealed = True
            changed = ["total", "sealed"]
            if row.pending <= 0 and row.finished_at is None:
                changed += finish(database, row, timezone.now())
            row.save(using=database, update_fields=changed)
    return row
