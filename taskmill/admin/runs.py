"""Runs in the admin: a list that stays fast with millions of rows, and each run's page with
its arguments, outcome, every attempt's error, its metadata and progress, its schedule,
dependencies and callbacks. A run whose task no worker knows is marked "unknown task"
(taskmill.unknown_tasks)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.utils.html import format_html

from .. import registry
from ..db import get_engine
from ..db.lookups import values_in
from ..limits.report import why_held
from ..models import FINISHED_STATUSES, Run
from ..registry import resolve_or_none
from ..retries import max_attempts_for
from ..tasks import DEFAULT_MAX_SNOOZES, effective_option
from ..unknown_tasks import is_known
from . import display, masking, repoint, run_actions, run_list
from . import metadata as run_metadata
from .enqueue import enqueue_view
from .filters import BatchFilter, EnqueuedWithinFilter, QueueFilter, TaskFilter, TaskKnownFilter
from .paging import CappedPaginator, LookaheadPaginator, RunChangeList
from .run_surroundings import RunSurroundings

ARGUMENT_SEARCH = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")
# A number typed in the search box finds the run with that id, and the runs among the newest
# this many (by id) that hold it among their positional arguments. The id range bounds the
# scan: at 1,000,000 runs the unbounded look took 1.1 s on MariaDB and 0.35 s on PostgreSQL
# for a rare number, against 9 ms and 8 ms bounded (and 3 ms on SQLite, read in two steps).
# args.N=value searches every run.
NUMBER_SEARCH_WINDOW = 10_000
# args.N=value: the positional argument at index N (from 0).
POSITIONAL_SEARCH = re.compile(r"^args\.(\d{1,3})=(.+)$")

# What a run holds of its arguments and result: shown (masked) only to who may see them.
HIDDEN_FIELDS = ("args", "kwargs", "return_value", "errors", "metadata")
HIDDEN_DISPLAYS = frozenset({"args_json", "kwargs_json", "return_value_json", "metadata_json"})
# The progress bar is for whoever may view runs; its message (the task's free text) only for
# who may see arguments, who get this field in its place.
PROGRESS_WITH_MESSAGE = "progress"
PROGRESS_FIGURES = "progress_figures"


@admin.register(Run)
class RunAdmin(RunSurroundings, admin.ModelAdmin):
    # Six columns that fit at 1,280 pixels; run_list.py says what shares a cell and why.
    list_display = (
        "id",
        run_list.task_name,
        run_list.status,
        run_list.queue_name,
        run_list.times,
    )
    list_filter = (
        "status",
        QueueFilter,
        TaskFilter,
        TaskKnownFilter,
        EnqueuedWithinFilter,
        BatchFilter,
    )
    search_fields = ("task_path",)
    search_help_text = (
        "A run id, part of a task's path, or key=value to find runs whose keyword arguments "
        'hold it (account=42, email="a@b.c"; the value is read as JSON when it can be); '
        "meta:key=value in their metadata (meta:customer=42, meta:source.file=a.csv)."
    )
    ordering = ("-id",)
    list_per_page = 50
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    fieldsets = (
        (
            None,
            {"fields": ("task_path", "status", "queue_name", "priority", "attempts", "snoozed")},
        ),
        (
            "Times",
            {
                "fields": (
                    "enqueued_at_ms",
                    "available_at_ms",
                    "started_at_ms",
                    "last_attempted_at_ms",
                    "finished_at_ms",
                    "duration",
                    "expires_at_ms",
                )
            },
        ),
        ("Arguments", {"fields": ("args_json", "kwargs_json")}),
        ("Outcome", {"fields": ("return_value_json", "errors_list")}),
        ("Metadata", {"fields": ("metadata_json",)}),
        (
            "Workers",
            {"fields": ("worker_id", "workers", "lease_expires_at_ms", "stop_requested")},
        ),
        (
            "Schedule, batch, dependencies, callbacks",
            {
                "fields": (
                    "schedule_link",
                    "scheduled_for",
                    "batch_link",
                    "depends_on",
                    "dependents",
                    "callbacks",
                )
            },
        ),
        ("Storage", {"fields": ("backend", "unique_key", "options"), "classes": ("collapse",)}),
    )

    class Media:
        css = {"all": ("taskmill/control-room.css",)}

    actions = [*run_actions.LIST_ACTIONS, repoint.repoint_runs, run_actions.delete_finished]

    def get_search_results(self, request, queryset, search_term):
        """An id goes straight to its run; key=value looks inside the keyword arguments,
        args.N=value at a positional one; anything else is a part of the task's path."""
        term = search_term.strip()
        in_metadata = run_metadata.METADATA_SEARCH.match(term)
        if in_metadata:
            # Like a search inside the arguments: no index serves it, and what one may not
            # see one may not probe for.
            request.taskmill_argument_search = True
            path, raw = in_metadata.groups()
            if not masking.may_see_arguments(request) or run_metadata.search_touches_masked_key(
                path, raw
            ):
                return queryset.none(), False
            found = run_metadata.search_metadata(queryset, path, raw)
            if found is not None:
                return found, False
        if term.isdigit():
            by_id = Q(pk=int(term))
            if not self._may_search_positional(request):
                return queryset.filter(by_id), False
            # Or a run with that positional argument, as a number or as text (Wagtail's
            # ("home", "articlepage", "5")), among the newest runs only: no index serves
            # it, and an id typed in must be found at once in a table of millions.
            request.taskmill_argument_search = True
            holds = get_engine(queryset.db).json_array_holds("args", [int(term), term])
            newest = _newest_id(queryset)
            if newest > NUMBER_SEARCH_WINDOW:
                # Those runs first, by themselves (a range of the primary key), then the page
                # by id: in one statement SQLite's planner walked the whole table for the OR
                # (0.3 s at 1,000,000 runs) where this takes milliseconds everywhere.
                window = queryset.model.objects.using(queryset.db).filter(
                    holds, pk__gt=newest - NUMBER_SEARCH_WINDOW
                )
                holds = values_in("pk", window.values_list("pk", flat=True))
            return queryset.filter(by_id | holds), False
        positional = POSITIONAL_SEARCH.match(term)
        if positional:
            request.taskmill_argument_search = True  # unindexed: see below
            if not self._may_search_positional(request):
                return queryset.none(), False  # no probing of what one may not see
            index, raw = positional.groups()
            return queryset.filter(_equals(f"args__{index}", raw)), False
        match = ARGUMENT_SEARCH.match(term)
        if match:
            # No index serves it: count no further than the page (see paging.py).
            request.taskmill_argument_search = True
            if not masking.may_see_arguments(request):
                return queryset.none(), False  # no probing of what one may not see
            key, raw = match.groups()
            value = _typed(raw)
            if masking.touches_masked_key(key, value):
                return queryset.none(), False  # a masked value is not found by guessing it
            if get_engine(queryset.db).searches_json_by_containment:
                # Containment (@>), which a GIN index on kwargs serves when a project adds
                # one (docs/control-room.md); the key lookup (->) could use no index.
                return queryset.filter(kwargs__contains={key: value}), False
            return queryset.filter(**{f"kwargs__{key}": value}), False
        return super().get_search_results(request, queryset, search_term)

    @staticmethod
    def _may_search_positional(request: HttpRequest) -> bool:
        # A project's own masking hook may hide any positional argument: what it hides
        # cannot be told from outside, so none is searched then.
        return masking.may_see_arguments(request) and not masking.hook_masks_arguments()

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # Django lets the query string filter by any lookup on a local field: on these JSON
        # fields, ?kwargs__password=... would find runs by what they hide, without the
        # permission to see arguments and past the masks. The search box does it properly.
        if lookup.split("__")[0] in HIDDEN_FIELDS:
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        if getattr(request, "taskmill_argument_search", False):
            try:
                page_number = int(request.GET.get("p", 1))
            except ValueError:
                page_number = 1
            return LookaheadPaginator(queryset, per_page, page_number=page_number)
        return super().get_paginator(request, queryset, per_page, orphans, allow_empty_first_page)

    def get_changelist(self, request, **kwargs):
        return RunChangeList

    def get_actions(self, request, action_location=None):
        # Django 6.1 passes where the actions are shown (the list, or a run's page); 5.2 not.
        located = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **located)
        # Django's own would list every related object of every selected run on one page,
        # and delete running ones: delete_finished replaces it.
        actions.pop("delete_selected", None)
        return actions

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.retry_run")

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.cancel_run")

    def has_copy_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.enqueue_run")

    def has_repoint_permission(self, request) -> bool:
        return request.user.has_perm(repoint.PERMISSION)

    def changelist_view(self, request, extra_context=None):
        registry.autodiscover()  # so that "unknown task" means what it means to a worker
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        act = self.admin_site.admin_view(self.act_view)
        form = self.admin_site.admin_view(lambda request: enqueue_view(self, request))
        return [
            path("enqueue/", form, name="taskmill_run_enqueue"),
            path("<path:object_id>/act/<str:name>/", act, name="taskmill_run_act"),
            *super().get_urls(),
        ]

    def act_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """A button on a run's page: one action on this one run (POST only)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # The button is on a run's page: who may not see the page may not press it (nor
        # learn, from a 404, which runs exist).
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(Run, pk=object_id)
        action = run_actions.ACTIONS.get(name)
        if action is None or action not in run_actions.available(request, run):
            raise PermissionDenied
        result = run_actions.perform(request, action, Run.objects.filter(pk=run.pk))
        run_actions.report(self, request, action, result)
        return redirect("admin:taskmill_run_change", run.pk)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        registry.autodiscover()  # so that "unknown task" means what it means to a worker
        run = Run.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        extra = {"run_actions": run_actions.available(request, run) if run else []}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, group in self.fieldsets for name in group["fields"]] + [
            "held_back",
            PROGRESS_WITH_MESSAGE,
            PROGRESS_FIGURES,
            "unknown_task",
        ]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # runs are created by enqueueing a task, never by hand

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # what happened is not edited: a run's page is read-only, no Save

    def has_delete_permission(self, request, obj=None) -> bool:
        # Like the list's delete_finished: an active run belongs to a worker or a schedule,
        # and its delete page would remove it from under them.
        if obj is not None and obj.status not in FINISHED_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        """The last attempt's, from its start to its end."""
        return display.between(run.last_attempted_at, run.finished_at)

    # -- one run ------------------------------------------------------------------------

    @admin.display(description="attempts")
    def attempts(self, run: Run) -> str:
        task = resolve_or_none(run.task_path)
        limit = max_attempts_for(task, run.options, run.backend) if task else None
        return f"{run.attempt} of at most {limit}" if limit else str(run.attempt)

    @admin.display(description="snoozes")
    def snoozed(self, run: Run) -> str:
        """Shown only for a run that snoozed (get_fieldsets): why its attempts outnumber
        its max_attempts, and how close it is to its max_snoozes."""
        task = resolve_or_none(run.task_path)
        limit = effective_option(task, run.options, "max_snoozes")
        if limit is None and task is not None:
            limit = DEFAULT_MAX_SNOOZES
        counted = f"{run.snoozes} of at most {limit}" if limit is not None else str(run.snoozes)
        return f"{counted}: attempts that ended in a snooze, using none of max_attempts"

    @admin.display(description="enqueued at")
    def enqueued_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.enqueued_at)

    @admin.display(description="available at")
    def available_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.available_at)

    @admin.display(description="first started at")
    def started_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.started_at)

    @admin.display(description="last attempt started at")
    def last_attempted_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.last_attempted_at)

    @admin.display(description="finished at")
    def finished_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.finished_at)

    @admin.display(description="expires at")
    def expires_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.expires_at)

    @admin.display(description="lease expires at")
    def lease_expires_at_ms(self, run: Run) -> str:
        return display.moment_ms(run.lease_expires_at)

    @admin.display(description="positional arguments")
    def args_json(self, run: Run) -> str:
        return display.pretty_json(masking.masked_arguments(run)[0])

    @admin.display(description="keyword arguments")
    def kwargs_json(self, run: Run) -> str:
        return display.pretty_json(masking.masked_arguments(run)[1])

    @admin.display(description="return value")
    def return_value_json(self, run: Run) -> str:
        return display.pretty_json(masking.masked_value(run.return_value))

    def get_fieldsets(self, request, obj=None):
        may_see = masking.may_see_arguments(request)
        hidden = set() if may_see else HIDDEN_DISPLAYS
        # Next to its status: why a READY run is held back by a limit, and the progress
        # the task reported, if any.
        if obj is None or not obj.snoozes:
            hidden = {*hidden, "snoozed"}  # most runs never snooze: no line saying 0
        beside_status = []
        if obj is not None and self._why_held(obj) is not None:
            beside_status.append("held_back")
        if obj is not None and run_metadata.progress_of(obj) is not None:
            beside_status.append(PROGRESS_WITH_MESSAGE if may_see else PROGRESS_FIGURES)
        # A run whose task no worker knows says so next to its task.
        unknown = obj is not None and not is_known(obj.task_path)
        fieldsets = []
        for title, group in self.fieldsets:
            fields = []
            for name in group["fields"]:
                if name not in hidden:
                    fields.append(name)
                if name == "status":
                    fields.extend(beside_status)
                if unknown and name == "task_path":
                    fields.append("unknown_task")
            if fields:
                fieldsets.append((title, {**group, "fields": fields}))
        return fieldsets

    @staticmethod
    def _why_held(run: Run) -> str | None:
        """Read once per page (the fieldsets and the field both ask)."""
        if not hasattr(run, "_taskmill_why_held"):
            run._taskmill_why_held = why_held(run, run._state.db or "default")
        return run._taskmill_why_held

    @admin.display(description="held back")
    def held_back(self, run: Run) -> str:
        return format_html('<span class="tm-held-reason">{}</span>', self._why_held(run) or "—")

    @admin.display(description="progress")
    def progress(self, run: Run) -> str:
        return run_metadata.progress_bar(run, message=True)

    @admin.display(description="progress")
    def progress_figures(self, run: Run) -> str:
        return run_metadata.progress_bar(run, message=False)

    @admin.display(description="metadata")
    def metadata_json(self, run: Run) -> str:
        return run_metadata.metadata_json(run)


def _typed(raw: str) -> Any:
    """A searched value as typed: read as JSON when it can be, else as a string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _equals(lookup: str, raw: str) -> Q:
    """The JSON value at ``lookup`` equals what was typed (``_typed``), or its text too when
    that differs (``5`` finds 5 and "5": callers such as Wagtail pass ids as strings)."""
    value = _typed(raw)
    if isinstance(value, str):
        return Q(**{lookup: value})
    return Q(**{lookup: value}) | Q(**{lookup: raw})


def _newest_id(queryset: Any) -> int:
    """The highest run id, read from the primary key's end."""
    newest = queryset.model.objects.using(queryset.db).order_by("-pk").values_list("pk")[:1]
    return next((row[0] for row in newest), 0)
