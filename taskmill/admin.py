"""A first view of the runs in the admin; the control room grows from here."""

from __future__ import annotations

from django.contrib import admin

from .models import Run


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
    list_filter = ("status", "queue_name", "backend")
    search_fields = ("task_path", "id")
    date_hierarchy = "enqueued_at"
    ordering = ("-id",)
    readonly_fields = [field.name for field in Run._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        # Runs are created by enqueueing a task, never by hand.
        return False
