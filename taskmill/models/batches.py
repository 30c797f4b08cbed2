"""Storage of batches: runs enqueued together, with callbacks when the last one ends.

The counts are kept on the batch's row and changed under its lock in the transaction that
writes a member's final outcome (the finish is fenced by the attempt, so each member is
counted once): the member that brings ``pending`` to zero on a sealed batch enqueues its
callbacks, in that same transaction, exactly once.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _


class Batch(models.Model):
    """A group of runs (``taskmill.batch()``) and the callbacks its end enqueues."""

    id = models.BigAutoField(primary_key=True)
    description = models.CharField(_("description"), max_length=255, blank=True, default="")
    backend = models.CharField(_("backend alias"), max_length=64)
    created_at = models.DateTimeField(_("created at"))
    # The callbacks' task paths ("" for none); each is enqueued with the batch id.
    on_finish = models.CharField(_("on finish"), max_length=255, blank=True, default="")
    on_success = models.CharField(_("on success"), max_length=255, blank=True, default="")
    on_failure = models.CharField(_("on failure"), max_length=255, blank=True, default="")
    # False while the code that opened the batch may still add members: a batch whose first
    # members end before the last are enqueued must not finish early.
    sealed = models.BooleanField(_("sealed"), default=False, db_default=False)
    total = models.PositiveIntegerField(_("members"), default=0, db_default=0)
    succeeded = models.PositiveIntegerField(_("succeeded"), default=0, db_default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0, db_default=0)
    cancelled = models.PositiveIntegerField(_("cancelled"), default=0, db_default=0)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    # The runs the callbacks were enqueued as, in the order on_finish, on_success/on_failure.
    callback_runs = models.JSONField(_("callback runs"), default=list, blank=True)

    class Meta:
        db_table = "taskmill_batch"
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-id"]
        indexes = [models.Index(fields=["finished_at"], name="taskmill_batch_finished")]

    def __str__(self) -> str:
        return self.description or f"batch {self.pk}"

    @property
    def pending(self) -> int:
        """Members not ended yet (waiting, ready, running or retrying)."""
        return self.total - self.succeeded - self.failed - self.cancelled

    # The behaviour lives in taskmill.batches (imported when used: it builds on these models).

    def __enter__(self) -> Batch:
        """Enqueues in the block join this batch: created now if new (and sealed when the
        block ends), re-entered if it exists (``with context.batch:``)."""
        from ..batches.opening import enter

        return enter(self)

    def __exit__(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        from ..batches.opening import exit_

        exit_(self, exc)

    def add(self, task: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Enqueue ``task(*args, **kwargs)`` as one more member; its ``TaskResult``. Refused
        (``BatchFinished``) once the batch has finished."""
        from ..batches.members import add

        return add(self, task, args, kwargs)

    def seal(self) -> None:
        """Seal the batch: from now on it finishes once no member is pending. The end of the
        ``with`` block that created it does this; call it for a batch whose seal failed there
        (the database was unreachable as the block ended), once the database is back. Sealing
        a sealed batch changes nothing."""
        from ..batches.opening import seal

        seal(self)

    def refresh(self) -> None:
        """Read the counts (and the rest of the row) again from the database."""
        from ..batches.opening import database_of

        self.refresh_from_db(using=self._state.db or database_of(self.backend))
