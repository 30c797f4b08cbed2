"""Queues in the admin: what each holds now, its limits and what they hold back, the switch to
pause or resume it, and (taskmill.change_queue_limits) its limits changed at run time."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import control, overview
from ..limits.report import (
    QueueReport,
    in_use_text,
    limits_text,
    queue_reports,
    short_key_label,
    source_text,
)
from ..models import Queue, RunStatus
from ..templatetags.taskmill_admin import seconds
from .dashboard import recent_queue_activity
from .queue_limits import may_change_limits, queue_limits_view

NONE = "—"


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "ready",
        "scheduled",
        "waiting",
        "running",
        "held_back",
        "oldest_ready",
        "limits",
        "paused",
    )
    # No filter sidebar: a project has a handful of queues, the paused column says which are
    # paused, and the sidebar's width is what the limits' columns need at 1280 pixels.
    actions = ["pause", "resume"]
    # A queue's page: its switch and its limits (the limit columns are the gate's state,
    # shown in words by limits_in_force).
    fields = ("name", "paused", "paused_at", "limits_in_force", "held_back_by")
    readonly_fields = fields

    class Media:
        css = {"all": ("taskmill/control-room.css",)}

    def get_urls(self):
        view = self.admin_site.admin_view(
            lambda request, object_id: queue_limits_view(self, request, object_id)
        )
        return [
            path("<path:object_id>/limits/", view, name="taskmill_queue_limits"),
            *super().get_urls(),
        ]

    def get_list_display(self, request):
        # Who may change limits gets a link to the form in each queue's limits cell.
        if may_change_limits(self, request):
            return tuple("limits_changeable" if f == "limits" else f for f in self.list_display)
        return self.list_display

    def get_fields(self, request, obj=None):
        if may_change_limits(self, request):
            return tuple("limits_in_force_changeable" if f == "limits_in_force" else f
                         for f in self.fields)  # fmt: skip
        return self.fields

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # before writing anything, not after as Django's would
        # A queue needs no row until someone pauses it: give every queue that has work a row,
        # so that it is listed and can be paused from here.
        queues = overview.queue_overview()
        self._figures = {queue.name: queue for queue in queues}
        self._reports = queue_reports("default", queues)
        names = set(self._figures) | set(recent_queue_activity("default"))
        Queue.objects.bulk_create([Queue(name=name) for name in names], ignore_conflicts=True)
        capped = queues[0].capped if queues else ()
        if capped:
            # Under the title (the admin's subtitle): the reason for each "+" below.
            extra_context = {
                **(extra_context or {}),
                "subtitle": f"{', '.join(capped)}: more than {queues[0].count_cap:,} runs in "
                "all queues. Counting stopped there, so each figure marked + is a floor "
                "(TASKMILL_COUNT_CAP).",
            }
        return super().changelist_view(request, extra_context)

    def _figure(self, queue: Queue, name: str):
        figures = getattr(self, "_figures", {}).get(queue.name)
        return getattr(figures, name, 0) if figures else 0

    def _shown(self, queue: Queue, name: str) -> str:
        """The figure, with "+" when its state's counting stopped at the cap."""
        figures = getattr(self, "_figures", {}).get(queue.name)
        return figures.shown(name) if figures else "0"

    def _report(self, queue: Queue) -> QueueReport | None:
        return getattr(self, "_reports", {}).get(queue.name)

    @admin.display(description="ready")
    def ready(self, queue: Queue) -> str:
        return self._shown(queue, "ready")

    @admin.display(description="scheduled")
    def scheduled(self, queue: Queue) -> str:
        return self._shown(queue, "scheduled")

    @admin.display(description="waiting")
    def waiting(self, queue: Queue) -> str:
        return self._shown(queue, "waiting")

    @admin.display(description="running")
    def running(self, queue: Queue) -> str:
        return self._shown(queue, "running")

    @admin.display(description="held back")
    def held_back(self, queue: Queue) -> SafeString | str:
        """How many runs limits hold back, and under which keys most (one column: the
        list must fit a laptop's width beside the admin's navigation)."""
        held = self._shown(queue, "held")
        report = self._report(queue)
        if held == "0" or report is None or not report.top_held_keys:
            return held
        return format_html("{}{}", held, held_keys_cell(report))

    @admin.display(description="oldest ready")
    def oldest_ready(self, queue: Queue) -> str:
        return seconds(self._figure(queue, "oldest_ready_age") or None)

    @admin.display(description="limits")
    def limits(self, queue: Queue) -> SafeString | str:
        return limits_cell(self._report(queue))

    @admin.display(description="limits")
    def limits_changeable(self, queue: Queue) -> SafeString | str:
        return limits_cell(self._report(queue), _change_url(queue))

    # -- one queue's page ---------------------------------------------------------------

    def _page_report(self, queue: Queue) -> QueueReport | None:
        found = getattr(queue, "_taskmill_report", None)
        if found is None:
            figures = [entry for entry in overview.queue_overview() if entry.name == queue.name]
            found = queue_reports("default", figures).get(queue.name)
            queue._taskmill_report = found
        return found

    @admin.display(description="limits in force")
    def limits_in_force(self, queue: Queue) -> SafeString | str:
        return limits_cell(self._page_report(queue))

    @admin.display(description="limits in force")
    def limits_in_force_changeable(self, queue: Queue) -> SafeString | str:
        return limits_cell(self._page_report(queue), _change_url(queue))

    @admin.display(description="held back by")
    def held_back_by(self, queue: Queue) -> SafeString | str:
        report = self._page_report(queue)
        if report is None or not report.held:
            return "none"
        return format_html("{} runs: {}", report.held, held_keys_cell(report))

    # -- permissions and actions --------------------------------------------------------

    def has_add_permission(self, request) -> bool:
        return False  # a queue exists when a run names it

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # its state changes through the actions and the limits form

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


def _change_url(queue: Queue) -> str:
    return reverse("admin:taskmill_queue_limits", args=[queue.name])


def limits_cell(report: QueueReport | None, change_url: str = "") -> SafeString | str:
    """The limits in force, then (quieter) what is in use and where they come from, and
    the link to change them for who may."""
    change = format_html(' <a href="{}" class="tm-change-limits">change</a>', change_url)
    if report is None or (not report.limited and not report.set_at_run_time):
        return format_html("{}{}", NONE, change) if change_url else NONE
    state = in_use_text(report)
    if report.at_limit:
        state = format_html('{}<br><span class="tm-badge tm-at-limit">at its limit</span>', state)
    return format_html(
        '{}<span class="tm-quiet tm-line">{}</span><span class="tm-quiet tm-line">{}{}</span>',
        limits_text(report),
        state,
        source_text(report),
        change if change_url else "",
    )


def held_keys_cell(report: QueueReport) -> SafeString | str:
    """The keys holding back the most runs, each a link to its held runs."""
    if not report.top_held_keys:
        return NONE
    runs = reverse("admin:taskmill_run_changelist")
    return format_html(
        '<ul class="tm-held-keys">{}</ul>',
        format_html_join(
            "",
            '<li><a href="{}?{}" title="{}">{}</a> <span class="tm-quiet">{} {}</span></li>',
            (
                (
                    runs,
                    urlencode({"status": RunStatus.READY, "held_by": key.key}),
                    f"{key.key}: {key.label}",
                    short_key_label(key.key),
                    key.held,
                    key.kind,
                )
                for key in report.top_held_keys
            ),
        ),
    )
