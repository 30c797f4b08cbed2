"""The Sentry middleware's one setting, read when a worker builds its middleware."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

REPORT_RETRIES = "TASKMILL_SENTRY_REPORT_RETRIES"
# "all": every failed attempt, handled while the run will be retried; "final": only the
# failure that ends the run (a flaky task that succeeds on its second attempt says nothing).
CHOICES = ("all", "final")


def reports_retries() -> bool:
    """Whether failures that will be retried are reported (the setting is "all")."""
    value = getattr(settings, REPORT_RETRIES, "all")
    if value not in CHOICES:
        raise ImproperlyConfigured(
            f"{REPORT_RETRIES} must be one of {', '.join(map(repr, CHOICES))}, not {value!r}."
        )
    return value == "all"
