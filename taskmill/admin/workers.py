"""Workers in the admin: where each runs, what it serves, its heartbeat and load, and a way
to shut one down gracefully (as SIGTERM would)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import control
from ..conf import setting
from ..models import Worker
from ..templatetags.taskmill_admin import seconds


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    # What fits at 1,280 pixels: the concurrency is the load's "of N", not a column too.
    list_display = (
        "host",
        "pid",
        "label",
        "serves",
        "load",
        "heartbeat",
        "state",
        "processed",
    )
    list_filter = ("state", "host")
    search_fields = ("id", "host", "label")
    actions = ["shut_down"]
    readonly_fields = [field.name for field in Worker._meta.fields]

    class Media:
        css = {"all": ("taskmill/control-room.css",)}

    def has_add_permission(self, request) -> bool:
        return False  # a worker writes its own row when it starts

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_shutdown_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.shutdown_worker")

    @admin.display(description="queues")
    def serves(self, worker: Worker) -> str:
        queues = ", ".join(worker.queues) if worker.queues else "all"
        if worker.exclude_queues:
            queues += f" except {', '.join(worker.exclude_queues)}"
        return queues

    @admin.display(description="running now")
    def load(self, worker: Worker) -> str:
        return f"{len(worker.running or [])}/{worker.concurrency}"

    @admin.display(description="heartbeat", ordering="last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> SafeString:
        age = (timezone.now() - worker.last_heartbeat_at).total_seconds()
        silent = age > float(setting("TASKMILL_LEASE")) and worker.state != Worker.State.STOPPED
        # The age whole on its line ("832 ms ago", not "832 ms" over "ago").
        return format_html(
            '<span class="tm-nowrap">{} ago</span>{}', seconds(age), " (silent)" if silent else ""
        )

    @admin.action(
        description="Shut down the selected workers (gracefully)", permissions=["shutdown"]
    )
    def shut_down(self, request, queryset):
        asked = [worker.pk for worker in queryset if control.shutdown_worker(worker.pk)]
        if asked:
            LogEntry.objects.log_actions(
                request.user.pk,
                Worker.objects.filter(pk__in=asked),
                CHANGE,
                change_message="Asked to shut down",
            )
        self.message_user(request, f"Asked {len(asked)} worker(s) to shut down.", messages.SUCCESS)
