"""The runs list's "Point at another task..." action: runs whose task is gone from the code
(or any others not running) are pointed at a registered task, chosen on an intermediate page.

Like Django's own "delete selected" confirmation, the page posts back to the list with the
same selection (the ids, or "all matching the filter" and the list's query string), plus the
chosen task and ``apply``. Only who holds ``taskmill.repoint_run`` is offered the action or
may post it. Each run changed is written to the admin's log, saying which task it named
before. The change itself is ``taskmill.unknown_tasks.repoint``: READY, WAITING, FAILED and
CANCELLED runs only, locked while they change.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .. import registry
from ..models import Run
from ..unknown_tasks import COUNT_CAP, REPOINTABLE, is_known, repoint
from .run_actions import keyset_batches

PERMISSION = "taskmill.repoint_run"


class RepointForm(forms.Form):
    task_path = forms.ChoiceField(
        label="Task",
        help_text="A task registered in this code. A worker runs it with each run's arguments.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        registry.autodiscover()  # this process may not have imported the project's tasks yet
        paths = sorted(registry.registered_tasks())
        self.fields["task_path"].choices = [("", "---------"), *((path, path) for path in paths)]


@admin.action(description="Point at another task…", permissions=["repoint"])
def repoint_runs(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet):
    form = RepointForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        _apply(modeladmin, request, queryset, form.cleaned_data["task_path"])
        return None  # back to the list, with the message
    return TemplateResponse(
        request,
        "taskmill/admin/repoint.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": "Point runs at another task",
            "opts": modeladmin.model._meta,
            "form": form,
            **_tasks_now(queryset),
            "cap": COUNT_CAP,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "states": ", ".join(status.lower() for status in REPOINTABLE),
        },
    )


def _tasks_now(queryset: QuerySet) -> dict[str, Any]:
    """The tasks the selected runs that may be pointed elsewhere name now, with how many (of
    the first COUNT_CAP read: "all matching the filter" may be millions)."""
    paths = queryset.filter(status__in=REPOINTABLE).order_by().values_list("task_path", flat=True)
    read = list(paths[: COUNT_CAP + 1])
    counted = Counter(read[:COUNT_CAP])
    return {
        "tasks_now": [
            {"path": path, "runs": runs, "known": is_known(path)}
            for path, runs in sorted(counted.items())
        ],
        "capped": len(read) > COUNT_CAP,
    }


def _apply(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, task_path: str
) -> None:
    changed, left, problems = 0, 0, []
    for batch in keyset_batches(queryset.filter(status__in=REPOINTABLE).only("pk")):
        done = repoint([run.pk for run in batch], task_path, database=queryset.db)
        for old_path, ids in done.by_old_path.items():
            LogEntry.objects.log_actions(
                request.user.pk,
                Run.objects.filter(pk__in=ids),
                CHANGE,
                change_message=f"Pointed at task {task_path} (was {old_path}) "
                "(taskmill control room)",
            )
        changed += done.changed
        left += done.left
        problems += done.problems
    text = f"Pointed {changed} run(s) at task {task_path}."
    if left:
        problems.append(f"{left} run(s) were left as they are (running, or pointed there already)")
    if problems:
        text += " " + "; ".join(problems[:5]) + ("; …" if len(problems) > 5 else "")
    level = messages.SUCCESS if changed and not problems else messages.WARNING
    modeladmin.message_user(request, text, level)
