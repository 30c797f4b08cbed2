"""Batches in the admin: each with its progress, its members' counts by state (read from the
batch's own counters, never a count of the runs table), a link to its members in the runs
list, and its callbacks' runs.

Who may view runs may view batches: a batch is a group of runs, and its page links to them.
Nothing is edited or deleted here: a batch is written by its runs, and pruned with them. One
action: seal a batch whose opening code stopped before the end of its ``with`` block (a
process killed, a database gone as the block ended); its members then end it, and its
callbacks are enqueued. It needs the permission to enqueue runs, which is what it leads to.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..models import Batch, Run
from . import display

# An open batch not sealed this long after it was created: its opener most likely stopped.
UNSEALED_FOR_LONG = timedelta(hours=1)


class BatchStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return [("open", "open"), ("finished", "finished")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(finished_at__isnull=True)
        if self.value() == "finished":
            return queryset.filter(finished_at__isnull=False)
        return queryset


def progress_bar(batch: Batch) -> SafeString:
    """One bar: the members that succeeded, failed and were cancelled, as parts of the total."""
    total = max(batch.total, 1)
    parts = [
        ("tm-ok", batch.succeeded, "succeeded"),
        ("tm-fail", batch.failed, "failed"),
        ("tm-cancel", batch.cancelled, "cancelled"),
    ]
    ended = batch.succeeded + batch.failed + batch.cancelled
    title = f"{ended} of {batch.total} ended" + ("" if batch.sealed else " (still enqueueing)")
    return format_html(
        '<span class="tm-batch-bar" title="{}" role="img" aria-label="{}">{}</span>',
        title,
        title,
        format_html_join(
            "",
            '<span class="{}" style="width: {}%" title="{} {}"></span>',
            (
                (css, f"{100 * count / total:.2f}", count, word)
                for css, count, word in parts
                if count
            ),
        ),
    )


def state_text(batch: Batch) -> str:
    if batch.finished_at is not None:
        return "finished"
    if batch.sealed:
        return "open"
    if timezone.now() - batch.created_at > UNSEALED_FOR_LONG:
        return "open, not sealed for over an hour: did the code that opened it stop? (Seal it)"
    return "open, still enqueueing"


def unsealed_for_long(database: str, most: int = 100) -> list[Batch]:
    """Batches not sealed an hour after their creation (for the dashboard), oldest first."""
    since = timezone.now() - UNSEALED_FOR_LONG
    rows = Batch.objects.using(database).filter(sealed=False, created_at__lt=since)
    return list(rows.order_by("created_at")[:most])


@admin.action(
    description="Seal selected batches (their opening code stopped)", permissions=["seal"]
)
def seal_batches(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    sealed = 0
    for batch in queryset.filter(sealed=False):
        batch.seal()
        modeladmin.log_change(request, batch, "Sealed from the admin")
        sealed += 1
    skipped = queryset.count() - sealed
    text = f"{sealed} batch(es) sealed: each finishes once its members have ended."
    if skipped:
        text += f" {skipped} already sealed, left as they were."
    modeladmin.message_user(request, text, messages.SUCCESS if sealed else messages.WARNING)


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "progress",
        "total",
        "succeeded",
        "failed",
        "cancelled",
        "pending_members",
        "created",
        "finished",
    )
    list_display_links = ("id", "name")
    list_filter = (BatchStateFilter,)
    search_fields = ("description",)
    search_help_text = "A batch id, or part of its description."
    ordering = ("-id",)
    list_per_page = 50
    show_facets = admin.ShowFacets.NEVER
    actions = [seal_batches]
    fieldsets = (
        (None, {"fields": ("description", "state", "backend")}),
        (
            "Members",
            {
                "fields": (
                    "progress",
                    "counts",
                    "members",
                )
            },
        ),
        ("Callbacks", {"fields": ("callbacks",)}),
        ("Times", {"fields": ("created_at_ms", "finished_at_ms", "duration")}),
    )

    class Media:
        css = {"all": ("taskmill/control-room.css",)}

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term.isdigit():
            return queryset.filter(pk=int(term)), False
        return super().get_search_results(request, queryset, search_term)

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, group in self.fieldsets for name in group["fields"]]

    # A batch is a group of runs: the runs' view permission opens it.
    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("taskmill.view_run")

    def has_module_permission(self, request) -> bool:
        return self.has_view_permission(request)

    def has_seal_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.enqueue_run")

    def has_add_permission(self, request) -> bool:
        return False  # opened by code: taskmill.batch()

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # written by its members' outcomes

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # pruned with its last member

    # -- the list ---------------------------------------------------------------------------

    @admin.display(description="description", ordering="description")
    def name(self, batch: Batch) -> str:
        return str(batch)

    @admin.display(description="progress")
    def progress(self, batch: Batch) -> SafeString:
        return progress_bar(batch)

    @admin.display(description="pending")
    def pending_members(self, batch: Batch) -> int:
        return batch.pending

    @admin.display(description="created", ordering="created_at")
    def created(self, batch: Batch) -> str:
        return display.moment(batch.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, batch: Batch) -> str:
        return display.moment(batch.finished_at)

    # -- one batch --------------------------------------------------------------------------

    @admin.display(description="state")
    def state(self, batch: Batch) -> str:
        return state_text(batch)

    @admin.display(description="counts by state")
    def counts(self, batch: Batch) -> SafeString:
        rows = [
            ("members", batch.total),
            ("succeeded", batch.succeeded),
            ("failed", batch.failed),
            ("cancelled", batch.cancelled),
            ("pending (waiting, ready, running or retrying)", batch.pending),
        ]
        return format_html(
            '<ul class="tm-figures tm-batch-counts">{}</ul>',
            format_html_join("", "<li>{}: <strong>{}</strong></li>", rows),
        )

    @admin.display(description="members")
    def members(self, batch: Batch) -> SafeString:
        url = f"{reverse('admin:taskmill_run_changelist')}?batch={batch.pk}"
        return format_html('<a href="{}" class="tm-batch-members">its runs</a>', url)

    @admin.display(description="callbacks")
    def callbacks(self, batch: Batch) -> SafeString:
        declared = [
            (name, path)
            for name, path in (
                ("on_finish", batch.on_finish),
                ("on_success", batch.on_success),
                ("on_failure", batch.on_failure),
            )
            if path
        ]
        if not declared:
            return format_html('<span class="tm-quiet">{}</span>', "none")
        runs = {run.task_path: run for run in self._callback_runs(batch)}
        finished = batch.finished_at is not None
        return format_html(
            '<ul class="tm-batch-callbacks">{}</ul>',
            format_html_join(
                "",
                "<li>{} {}: {}</li>",
                ((n, p, _run_link(runs.get(p), finished)) for n, p in declared),
            ),
        )

    @staticmethod
    def _callback_runs(batch: Batch) -> list[Run]:
        ids = [pk for pk in batch.callback_runs or [] if isinstance(pk, int)]
        if not ids:
            return []
        return list(Run.objects.filter(pk__in=ids).only("pk", "task_path", "status"))

    @admin.display(description="created at")
    def created_at_ms(self, batch: Batch) -> str:
        return display.moment_ms(batch.created_at)

    @admin.display(description="finished at")
    def finished_at_ms(self, batch: Batch) -> str:
        return display.moment_ms(batch.finished_at)

    @admin.display(description="duration")
    def duration(self, batch: Batch) -> str:
        return display.between(batch.created_at, batch.finished_at)


def _run_link(run: Run | None, finished: bool) -> SafeString | str:
    if run is None:
        # on_success and on_failure: only one of them is enqueued.
        return "not enqueued" if finished else "enqueued when the batch finishes"
    url = reverse("admin:taskmill_run_change", args=[run.pk])
    return format_html('<a href="{}">#{}</a> ({})', url, run.pk, run.status)
