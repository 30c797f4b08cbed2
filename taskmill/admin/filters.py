"""List filters for the runs that never scan the runs table to find their choices (Django's
default for a field lists its distinct values: a full scan of millions of rows)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone

from .. import overview, registry
from ..models import Batch
from ..rollups import recent_names
from ..unknown_tasks import unknown_task_paths


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue_name"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        # Names only: counting each queue's runs here made every load of the list count
        # the whole READY backlog, a million runs in an outage (issue 25).
        names = recent_names("queue_name")
        names.update(overview.queue_names())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(queue_name=self.value()) if self.value() else queryset


class TaskFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "task_path"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        paths = set(registry.registered_tasks())
        paths.update(recent_names("task_path"))
        return [(path, path) for path in sorted(paths)]

    def queryset(self, request, queryset):
        return queryset.filter(task_path=self.value()) if self.value() else queryset


class TaskKnownFilter(admin.SimpleListFilter):
    """Runs whose task no worker knows: their paths come from a skip scan of the task index
    (taskmill.unknown_tasks), then the list filters on them through the same index."""

    title = "task known"
    parameter_name = "task_known"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("unknown", "unknown task")]

    def queryset(self, request, queryset):
        if self.value() != "unknown":
            return queryset
        return queryset.filter(task_path__in=unknown_task_paths(queryset.db))


class EnqueuedWithinFilter(admin.SimpleListFilter):
    title = "enqueued"
    parameter_name = "enqueued_within"
    CHOICES: dict[str, tuple[str, timedelta]] = {
        "15m": ("in the last 15 minutes", timedelta(minutes=15)),
        "1h": ("in the last hour", timedelta(hours=1)),
        "1d": ("in the last day", timedelta(days=1)),
        "7d": ("in the last week", timedelta(days=7)),
    }

    def lookups(self, request, model_admin) -> list[tuple[str, Any]]:
        return [(key, label) for key, (label, _span) in self.CHOICES.items()]

    def queryset(self, request, queryset):
        choice = self.CHOICES.get(self.value() or "")
        if choice is None:
            return queryset
        return queryset.filter(enqueued_at__gte=timezone.now() - choice[1])


class BatchFilter(admin.SimpleListFilter):
    """The members of one batch (``?batch=<id>``, the link on a batch's page). Its choices are
    the latest batches and the one chosen: the batch table, never the runs."""

    title = "batch"
    parameter_name = "batch"
    LATEST = 10

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        latest = Batch.objects.order_by("-id")[: self.LATEST]
        choices = [(str(batch.pk), f"#{batch.pk} {batch}") for batch in latest]
        chosen = self.value()
        # The chosen one always: a filter without choices is dropped by the admin, which
        # would then list every run as if it were the batch's.
        if chosen and all(value != chosen for value, _label in choices):
            found = Batch.objects.filter(pk=int(chosen)).first() if chosen.isdigit() else None
            choices.append((chosen, f"#{chosen} {found or '(no such batch)'}"))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            raise IncorrectLookupParameters(f"batch must be a batch id, not {value!r}")
        return queryset.filter(batch_id=int(value))
