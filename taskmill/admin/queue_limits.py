"""Changing a queue's limits from the admin at run time: a form for its concurrency and rate
limits, and a way back to the settings' (``taskmill.set_queue_limits``, for every worker).

Only who holds ``taskmill.change_queue_limits`` (and may see the queues) gets the form; a
POST from anyone else is refused before anything is read. Each change is written to the
admin's log under the user who made it, with the limits before and after.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from ..compat import InvalidTask
from ..limits.queues import QueueLimits, set_queue_limits
from ..limits.rates import parse_rate
from ..limits.report import QueueReport, limits_text, queue_reports
from ..models import Queue
from ..overview import configured_queues, queue_overview

PERMISSION = "taskmill.change_queue_limits"
DATABASE = "default"  # the control room's, as on its other pages


class QueueLimitsForm(forms.Form):
    concurrency_limit = forms.IntegerField(
        label="Concurrency limit",
        required=False,
        min_value=1,
        error_messages={
            "min_value": "A concurrency limit is at least 1; leave it empty for no limit.",
            "invalid": "A concurrency limit is a whole number, such as 5.",
        },
        help_text="Runs of this queue running at once, over every worker. Empty: no limit.",
    )
    rate_limit = forms.CharField(
        label="Rate limit",
        required=False,
        max_length=32,
        help_text='Starts per window, over every worker: "100/m", "10/s", "5/30s". '
        "Empty: no limit.",
    )

    def clean_rate_limit(self) -> str | None:
        text = self.cleaned_data["rate_limit"].strip()
        if not text:
            return None
        try:
            return str(parse_rate(text))
        except InvalidTask:
            raise forms.ValidationError(
                f'"{text}" is not a rate: write starts per window, such as "100/m", "10/s" '
                'or "5/30s" (s, m, h or d).'
            ) from None


def may_change_limits(model_admin: Any, request: HttpRequest) -> bool:
    return model_admin.has_view_permission(request) and request.user.has_perm(PERMISSION)


def queue_limits_view(model_admin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    if not may_change_limits(model_admin, request):
        raise PermissionDenied  # before reading anything: no probing of which queues exist
    name = object_id
    if not (Queue.objects.filter(pk=name).exists() or name in configured_queues(DATABASE)):
        raise Http404(f"No queue named {name!r}.")
    report = _report(name)
    form = QueueLimitsForm(
        request.POST or None,
        initial={"concurrency_limit": report.concurrency_limit, "rate_limit": report.rate_limit},
    )
    if request.method == "POST" and ("_reset" in request.POST or form.is_valid()):
        before = _limits_of(report)
        if "_reset" in request.POST:
            after = set_queue_limits(name, reset=True, database=DATABASE)
            said = f"Limits reset to the settings: {_spelt(after)} (were {before})"
        else:
            after = set_queue_limits(
                name,
                concurrency_limit=form.cleaned_data["concurrency_limit"],
                rate_limit=form.cleaned_data["rate_limit"],
                database=DATABASE,
            )
            said = f"Limits set: {_spelt(after)} (were {before})"
        LogEntry.objects.log_actions(
            request.user.pk, Queue.objects.filter(pk=name), CHANGE, change_message=said
        )
        model_admin.message_user(request, f"Queue {name}: {said}.", messages.SUCCESS)
        return redirect("admin:taskmill_queue_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Limits of the queue {name}",
        "opts": model_admin.model._meta,
        "queue": name,
        "report": report,
        "in_force": limits_text(report),
        "settings_limits": _spelt(
            QueueLimits(
                report.settings["concurrency_limit"], parse_rate(report.settings["rate_limit"])
            )
        ),
        "form": form,
        "adminform": helpers.AdminForm(
            form, [(None, {"fields": list(form.fields)})], {}, model_admin=model_admin
        ),
    }
    return TemplateResponse(request, "taskmill/admin/queue_limits.html", context)


def _report(name: str) -> QueueReport:
    # The overview lists every queue with a row or in the settings: this one too.
    queues = [queue for queue in queue_overview(DATABASE) if queue.name == name]
    return queue_reports(DATABASE, queues)[name]


def _limits_of(report: QueueReport) -> str:
    source = "set at run time" if report.set_at_run_time else "from the settings"
    return f"{limits_text(report)}, {source}" if report.limited else "none"


def _spelt(limits: QueueLimits) -> str:
    parts = []
    if limits.concurrency_limit is not None:
        parts.append(f"{limits.concurrency_limit} at once")
    if limits.rate is not None:
        parts.append(str(limits.rate))
    return ", ".join(parts) or "none"
