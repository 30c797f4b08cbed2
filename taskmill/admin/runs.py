"""Runs in the admin: a list that stays fast with millions of rows, and each run's page."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from ..models import Run

# Past this many matching rows a list says "more than N" instead of counting them all.
COUNT_CAP = 10_000


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP + 1 rows: a COUNT over a million-row table takes seconds."""

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: COUNT_CAP + 1].count()


class RunChangeList(ChangeList):
    def get_results(self, request) -> None:
        super().get_results(request)
        # The unfiltered total would be a COUNT over the whole table: never shown.
        self.full_result_count = None
        self.capped = self.result_count > COUNT_CAP


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "task_path",
        "status",
        "queue_name",
        "priority",
        "attempt",
        "enqueued_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status",)
    search_fields = ("task_path", "id")
    ordering = ("-id",)
    readonly_fields = [field.name for field in Run._meta.fields]
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request, **kwargs):
        return RunChangeList

    def has_add_permission(self, request, obj=None) -> bool:
        # Runs are created by enqueueing a task, never by hand.
        return False
