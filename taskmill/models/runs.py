"""Storage: one row per enqueued run of a task.

The claim index (``taskmill.models.indexes``) is shaped per database so that millions of
finished runs never slow a claim.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..compat import TaskResultStatus
from .indexes import ClaimIndex, StageIndex


class Run(models.Model):
    """One enqueued call of a task, and everything that happened to it since."""

    # A bigint sequence is the enqueue order the claim query sorts by, and keeps the
    # claim index small; the public result id is its decimal string.
    id = models.BigAutoField(primary_key=True)
    task_path = models.CharField(_("task"), max_length=255, db_index=True)
    backend = models.CharField(_("backend alias"), max_length=64)
    queue_name = models.CharField(_("queue"), max_length=64)
    priority = models.SmallIntegerField(_("priority"), default=0)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=TaskResultStatus.choices,
        default=TaskResultStatus.READY,
    )
    args = models.JSONField(_("positional arguments"), default=list)
    kwargs = models.JSONField(_("keyword arguments"), default=dict)

    enqueued_at = models.DateTimeField(_("enqueued at"))
    # What the caller asked for (None: as soon as possible)...
    run_after = models.DateTimeField(_("run after"), null=True, blank=True)
    # ...and when the run may next be claimed: run_after, or the enqueue time. Retries
    # move it forward, so the claim query never has to reason about why a run waits.
    available_at = models.DateTimeField(_("available at"))
    # False while available_at is in the future: such runs stay out of the claim index, and
    # the worker's staging step marks them due when their time comes (a cheap indexed
    # UPDATE), so claims never scan runs deferred to later, however many there are.
    due = models.BooleanField(_("due"), default=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    last_attempted_at = models.DateTimeField(_("last attempted at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, db_index=True)

    # The attempt number is the fencing token: a worker finishing a run names the
    # attempt it ran, and the write only lands if the row still holds that attempt.
    attempt = models.PositiveIntegerField(_("attempt"), default=0)
    worker_id = models.CharField(_("current worker"), max_length=128, blank=True, default="")
    worker_ids = models.JSONField(_("workers, one per attempt"), default=list)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)

    return_value = models.JSONField(_("return value"), null=True, blank=True)
    errors = models.JSONField(_("errors, one per failed attempt"), default=list)

    # Set when a schedule enqueued the run: which one, for which fire time. Unique together,
    # the backstop against a double fire (taskmill.scheduler.firing); their index also
    # serves the foreign key, hence no index of its own.
    schedule = models.ForeignKey(
        "taskmill.Schedule",
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    scheduled_for = models.DateTimeField(_("fire time"), null=True, blank=True)

    class Meta:
        db_table = "taskmill_run"
        verbose_name = _("task run")
        verbose_name_plural = _("task runs")
        ordering = ["-id"]
        indexes = [ClaimIndex(name="taskmill_run_claim"), StageIndex(name="taskmill_run_stage")]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"], name="taskmill_run_unique_fire"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} #{self.pk} ({self.status})"
