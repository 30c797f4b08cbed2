"""Queues in the admin: what each holds now, and the switch to pause or resume it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied

from .. import control, overview
from ..models import Queue
from ..templatetags.taskmill_admin import seconds
from .dashboard import recent_queue_activity


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("name", "ready", "scheduled", "waiting", "running", "oldest_ready", "paused")
    list_filter = ("paused",)
    actions = ["pause", "resume"]
    readonly_fields = ("name", "paused", "paused_at")

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # before writing anything, not after as Django's would
        # A queue needs no row until someone pauses it: give every queue that has work a row,
        # so that it is listed and can be paused from here.
        self._figures = {queue.name: queue for queue in overview.queue_overview()}
        names = set(self._figures) | set(recent_queue_activity("default"))
        Queue.objects.bulk_create([Queue(name=name) for name in names], ignore_conflicts=True)
        return super().changelist_view(request, extra_context)

    def _figure(self, queue: Queue, name: str):
        figures = getattr(self, "_figures", {}).get(queue.name)
        return getattr(figures, name, 0) if figures else 0

    @admin.display(description="ready")
    def ready(self, queue: Queue) -> int:
        return self._figure(queue, "ready")

    @admin.display(description="scheduled")
    def scheduled(self, queue: Queue) -> int:
        return self._figure(queue, "scheduled")

    @admin.display(description="waiting")
    def waiting(self, queue: Queue) -> int:
        return self._figure(queue, "waiting")

    @admin.display(description="running")
    def running(self, queue: Queue) -> int:
        return self._figure(queue, "running")

    @admin.display(description="oldest ready")
    def oldest_ready(self, queue: Queue) -> str:
        return seconds(self._figure(queue, "oldest_ready_age") or None)

    def has_add_permission(self, request) -> bool:
        return False  # a queue exists when a run names it

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # its only state, paused, changes through the actions

    def has_pause_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.pause_queue")

    @admin.action(description="Pause the selected queues", permissions=["pause"])
    def pause(self, request, queryset):
        self._switch(request, queryset, control.pause_queue, "Paused")

    @admin.action(description="Resume the selected queues", permissions=["pause"])
    def resume(self, request, queryset):
        self._switch(request, queryset, control.resume_queue, "Resumed")

    def _switch(self, request, queryset, operation, verb: str) -> None:
        changed = [queue.name for queue in queryset if operation(queue.name)]
        if changed:
            LogEntry.objects.log_actions(
                request.user.pk, Queue.objects.filter(pk__in=changed), CHANGE, change_message=verb
            )
        self.message_user(
            request, f"{verb}: {', '.join(changed) or 'nothing to change'}.", messages.SUCCESS
        )
