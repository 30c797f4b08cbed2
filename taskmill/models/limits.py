"""Flow control's state (taskmill.limits): one row per key a limit counts under, and the
starts a rate limit counts.

A ``Limit`` row is what the claim's gate and the slot's release lock, so that two workers
never both take a key's last slot; what is in use is counted from the runs themselves
(RUNNING runs with the key), never kept as a counter that a crash could leave wrong.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Limit(models.Model):
    """A key of a task's concurrency limit, rate limit or fair share, with its limits as
    the task declares them (written by the gate from the code)."""

    # "concurrency:<task>[:<key>]", "rate:<task>[:<key>]" or "fair:<queue>:<key>".
    key = models.CharField(_("key"), max_length=255, primary_key=True)
    concurrency_limit = models.PositiveIntegerField(_("concurrency limit"), null=True, blank=True)
    rate_count = models.PositiveIntegerField(_("starts per window"), null=True, blank=True)
    rate_seconds = models.FloatField(_("window (seconds)"), null=True, blank=True)
    # While runs are held back: when to look again (the rate's window moves on; for the
    # others a backstop, should a slot have been freed by a path that could not say so).
    release_at = models.DateTimeField(_("look again at"), null=True, blank=True, db_index=True)

    class Meta:
        db_table = "taskmill_limit"
        verbose_name = _("limit key")
        verbose_name_plural = _("limit keys")
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class LimitStart(models.Model):
    """One start counted by a rate limit (a task's key, or "queue:<name>"); kept for the
    rate's window, then pruned by the gate.

    Written when the gate lets the run start, not yet ``begun``: until its body begins (a
    thread to free, a busy machine) it counts in every window, and its body's beginning
    writes the true time. So a run claimed at the end of one window and begun late in the
    next counts in the next, and no window holds more starts than the rate.
    """

    id = models.BigAutoField(primary_key=True)
    key = models.CharField(_("key"), max_length=255)
    started_at = models.DateTimeField(_("started at"))
    run_id = models.BigIntegerField(_("run"), null=True, blank=True)
    begun = models.BooleanField(_("begun"), default=True, db_default=True)

    class Meta:
        db_table = "taskmill_limit_start"
        verbose_name = _("rate-limited start")
        verbose_name_plural = _("rate-limited starts")
        indexes = [models.Index(fields=["key", "started_at"], name="taskmill_limit_start_key")]
