"""Storage: one row per worker process, and one per queue that has been paused.

A worker writes its row when it starts and its heartbeat refreshes it; the admin and
``manage.py taskmill status`` read them. Liveness of runs does not depend on these rows:
each run carries its own lease (``Run.lease_expires_at``).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Worker(models.Model):
    class State(models.TextChoices):
        RUNNING = "running", _("running")
        STOPPING = "stopping", _("stopping")
        STOPPED = "stopped", _("stopped")

    id = models.CharField(_("worker id"), max_length=128, primary_key=True)
    host = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    label = models.CharField(_("label"), max_length=100, blank=True, default="")
    database = models.CharField(_("database alias"), max_length=64, default="default")
    queues = models.JSONField(_("queues"), null=True, blank=True, help_text=_("None: all."))
    exclude_queues = models.JSONField(_("excluded queues"), default=list, blank=True)
    concurrency = models.PositiveIntegerField(_("concurrency"), default=1)
    started_at = models.DateTimeField(_("started at"))
    last_heartbeat_at = models.DateTimeField(_("last heartbeat"), db_index=True)
    state = models.CharField(_("state"), max_length=10, choices=State.choices)
    # The run ids it runs now, as of its last heartbeat.
    running = models.JSONField(_("running now"), default=list, blank=True)
    processed = models.PositiveBigIntegerField(_("tasks processed"), default=0)
    shutdown_requested = models.BooleanField(_("shutdown requested"), default=False)

    class Meta:
        db_table = "taskmill_worker"
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["-started_at"]
        permissions = [("shutdown_worker", _("Can shut workers down"))]

    def __str__(self) -> str:
        return self.id


class Queue(models.Model):
    """A queue's switches. A queue needs no row to exist: runs name their queue; a row
    appears when someone pauses it or limits it (taskmill.limits)."""

    name = models.CharField(_("name"), max_length=64, primary_key=True)
    paused = models.BooleanField(_("paused"), default=False)
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)
    # Limits shared by every run of the queue: the backend's OPTIONS["QUEUE_LIMITS"],
    # copied here, unless set at run time (set_queue_limits, the admin; limits_set_at).
    concurrency_limit = models.PositiveIntegerField(_("concurrency limit"), null=True, blank=True)
    rate_limit = models.CharField(_("rate limit"), max_length=32, null=True, blank=True)
    limits_set_at = models.DateTimeField(_("limits set at run time"), null=True, blank=True)
    # No slot free (or no start left in the rate's window): claims pass the queue over, as
    # a paused one, until a run of it ends or the window moves (release_at).
    at_limit = models.BooleanField(_("at its limit"), default=False, db_default=False)
    release_at = models.DateTimeField(_("look again at"), null=True, blank=True)

    class Meta:
        db_table = "taskmill_queue"
        verbose_name = _("queue")
        verbose_name_plural = _("queues")
        ordering = ["name"]
        permissions = [
            ("pause_queue", _("Can pause and resume queues")),
            ("change_queue_limits", _("Can change queues' limits")),
        ]

    def __str__(self) -> str:
        return self.name
