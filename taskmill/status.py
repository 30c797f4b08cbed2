"""A run's status: the one vocabulary taskmill's code speaks of runs in.

Below the models, so that modules importable before Django's app registry is ready (the
task decorator's, the results') can use it too. Each member is a ``str``, so it goes as it
is into an ORM filter, a comparison with a row's value, or the text of a SQL statement.
Django's ``TaskResultStatus`` is for ``TaskResult`` objects only (``taskmill.results``
translates).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    """A run's true state. Django's API knows only READY/RUNNING/SUCCESSFUL/FAILED: it sees
    WAITING as READY and CANCELLED as FAILED (``taskmill.results``)."""

    READY = "READY", _("Ready")
    # Enqueued with depends_on, waiting for those runs to succeed; outside the claim index.
    WAITING = "WAITING", _("Waiting")
    RUNNING = "RUNNING", _("Running")
    SUCCESSFUL = "SUCCESSFUL", _("Successful")
    FAILED = "FAILED", _("Failed")
    CANCELLED = "CANCELLED", _("Cancelled")


# States a unique key is held in: at most one such run per (task, key).
ACTIVE_STATUSES = (RunStatus.READY, RunStatus.WAITING, RunStatus.RUNNING)
FINISHED_STATUSES = (RunStatus.SUCCESSFUL, RunStatus.FAILED, RunStatus.CANCELLED)
