"""Storage: one row per enqueued run of a task.

The claim index (``taskmill.models.indexes``) is shaped per database so that millions of
finished runs never slow a claim.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Case, F, Value, When
from django.utils.translation import gettext_lazy as _

from ..status import ACTIVE_STATUSES, RunStatus
from .indexes import (
    ClaimIndex,
    EndedIndex,
    HeldIndex,
    KeyedReadyIndex,
    NotNullIndex,
    NotNullUniqueConstraint,
    RunningIndex,
    StagingIndex,
    WaitingIndex,
)


class Run(models.Model):
    """One enqueued call of a task, and everything that happened to it since."""

    # A bigint sequence is the enqueue order the claim query sorts by, and keeps the
    # claim index small; the public result id is its decimal string.
    id = models.BigAutoField(primary_key=True)
    task_path = models.CharField(_("task"), max_length=255)
    backend = models.CharField(_("backend alias"), max_length=64)
    queue_name = models.CharField(_("queue"), max_length=64)
    priority = models.SmallIntegerField(_("priority"), default=0)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=RunStatus.choices,
        default=RunStatus.READY,
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
    # A full index, not a partial one like expires_at's: the control room sorts runs by it,
    # unfinished ones included, which only a full index can serve.
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True, db_index=True)

    # The attempt number is the fencing token: a worker finishing a run names the
    # attempt it ran, and the write only lands if the row still holds that attempt.
    attempt = models.PositiveIntegerField(_("attempt"), default=0)
    worker_id = models.CharField(_("current worker"), max_length=128, blank=True, default="")
    worker_ids = models.JSONField(_("workers, one per attempt"), default=list)
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    # Claimed but not started as of the worker's last heartbeat: if the worker dies, the run
    # goes back as if never claimed (no lost attempt).
    prefetched = models.BooleanField(_("claimed, not started"), default=False, db_default=False)
    # Cancel or stop asked for while it runs; the worker's heartbeat reads it.
    stop_requested = models.BooleanField(_("stop requested"), default=False, db_default=False)
    # Per-call options (max_attempts, timeout, result_ttl, retry_on_database_errors,
    # max_snoozes) that differ from the task's own.
    options = models.JSONField(_("per-call options"), null=True, blank=True)

    # At most one READY/WAITING/RUNNING run per (task, unique key): the database enforces
    # it through a unique index on a column that holds the key only while the run is active.
    unique_key = models.CharField(_("unique key"), max_length=200, null=True, blank=True)
    active_unique_key = models.GeneratedField(
        expression=Case(
            When(status__in=ACTIVE_STATUSES, then=F("unique_key")),
            default=Value(None),
            output_field=models.CharField(max_length=200, null=True),
        ),
        output_field=models.CharField(max_length=200, null=True),
        db_persist=True,
    )
    # Set (under the row's lock) when a run enqueued with depends_on names this one, so the
    # finish knows to release or cancel its dependents.
    has_dependents = models.BooleanField(_("has dependents"), default=False, db_default=False)
    # When a finished run may be pruned (its task's result_ttl); None: kept. Indexed where
    # set (NotNullIndex below), for the pruner.
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)

    return_value = models.JSONField(_("return value"), null=True, blank=True)
    errors = models.JSONField(_("errors, one per failed attempt"), default=list)

    # Flow control (taskmill.limits), set at enqueue from the task's options: the key its
    # concurrency limit and its rate limit count under (the task's path, and the key when
    # the limit is per key), and the key it shares its queue fairly under.
    concurrency_key = models.CharField(_("concurrency key"), max_length=255, null=True, blank=True)
    rate_key = models.CharField(_("rate key"), max_length=255, null=True, blank=True)
    fair_key = models.CharField(_("fair key"), max_length=255, null=True, blank=True)
    # While a READY run is held back by a limit (not due, out of the claim's and the
    # stager's indexes): the ``Limit`` whose freed slot lets it go.
    held_by = models.CharField(_("held back by"), max_length=255, null=True, blank=True)

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

    # Set when the run was enqueued in a batch (taskmill.batch()): its final outcome counts
    # towards the batch's, and the last one enqueues the batch's callbacks.
    batch = models.ForeignKey(
        "taskmill.Batch",
        verbose_name=_("batch"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,  # NotNullIndex below: most runs are in no batch
    )
    # What the task wrote about itself (``context.metadata``, ``save_metadata()``), with its
    # progress under "progress"; what the caller passed with ``.using(metadata=...)``.
    metadata = models.JSONField(_("metadata"), null=True, blank=True)
    # Attempts that ended in ``raise taskmill.Snooze(...)``: they move ``attempt`` on (the
    # fencing token) but count towards max_snoozes, not max_attempts, nor the backoff.
    snoozes = models.PositiveIntegerField(_("snoozes"), default=0, db_default=0)

    class Meta:
        db_table = "taskmill_run"
        verbose_name = _("task run")
        verbose_name_plural = _("task runs")
        ordering = ["-id"]
        # What the control room lets an operator do, beyond Django's view/delete.
        permissions = [
            ("retry_run", _("Can retry failed or cancelled runs")),
            ("cancel_run", _("Can cancel or stop runs")),
            ("enqueue_run", _("Can enqueue runs from the admin")),
            ("view_run_arguments", _("Can see runs' arguments and return values")),
            ("repoint_run", _("Can point runs of an unknown task at a registered task")),
        ]
        indexes = [
            ClaimIndex(name="taskmill_run_claim"),
            StagingIndex(name="taskmill_run_staging"),
            HeldIndex(name="taskmill_run_held"),
            KeyedReadyIndex(fields=["concurrency_key"], name="taskmill_run_ready_ckey"),
            KeyedReadyIndex(fields=["rate_key"], name="taskmill_run_ready_rkey"),
            KeyedReadyIndex(fields=["fair_key"], name="taskmill_run_ready_fkey"),
            RunningIndex(name="taskmill_run_running"),
            WaitingIndex(name="taskmill_run_waiting"),
            # The control room's time-range filter and its capped count ("enqueued in the last
            # hour" over millions of runs). The column never changes after the insert, so
            # claims and finishes never touch this index; only inserts pay for it.
            models.Index(fields=["enqueued_at"], name="taskmill_run_enqueued"),
            # The task filter, alone or with a queue, in the list's order (migration 0007).
            models.Index(fields=["task_path", "queue_name", "id"], name="taskmill_run_task_queue"),
            # Partial where the database allows (migration 0009): runs in flight, whose
            # claim and finish rewrite every index entry of the row, stay out of these.
            NotNullIndex(fields=["expires_at"], name="taskmill_run_expires"),
            # A batch's members, by state (its page, its sweep), and the foreign key's index.
            NotNullIndex(fields=["batch", "status"], name="taskmill_run_batch"),
            # The runs list filtered to failed or cancelled runs, in its order (migration
            # 0015): partial, so only a run that fails for good or is cancelled writes one.
            EndedIndex(status=RunStatus.FAILED, name="taskmill_run_failed"),
            EndedIndex(status=RunStatus.CANCELLED, name="taskmill_run_cancelled"),
        ]
        constraints = [
            NotNullUniqueConstraint(
                fields=["schedule", "scheduled_for"],
                nullable="schedule",
                name="taskmill_run_fire_once",
            ),
            NotNullUniqueConstraint(
                fields=["task_path", "active_unique_key"],
                nullable="active_unique_key",
                name="taskmill_run_active_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_path} #{self.pk} ({self.status})"


class RunDependency(models.Model):
    """``run`` waits until ``depends_on`` has succeeded (``.using(depends_on=[...])``)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="dependency_links")
    depends_on = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="dependent_links")

    class Meta:
        db_table = "taskmill_run_dependency"
        constraints = [
            models.UniqueConstraint(fields=["run", "depends_on"], name="taskmill_dependency_unique")
        ]
        indexes = [models.Index(fields=["depends_on"], name="taskmill_dependency_on")]


class Dashboard(Run):
    """No table of its own: the admin's control-room page, listed among taskmill's models
    and shown to whoever may view runs."""

    class Meta:
        proxy = True
        verbose_name = _("dashboard")
        verbose_name_plural = _("dashboard")
        default_permissions = ()
