"""Tables the test tasks write to (the app has no migrations: the test database gets them
from ``migrate``'s syncdb of unmigrated apps)."""

from __future__ import annotations

from django.db import models


class Effect(models.Model):
    """A row a task inserts as its side effect: atomic tasks must leave it exactly once."""

    name = models.CharField(max_length=100)

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return self.name
