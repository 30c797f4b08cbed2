"""The "enqueue a run" form: a registered task, its arguments as JSON, checked against the
task's signature before anything is written, then enqueued like any other call."""

from __future__ import annotations

import inspect
import json
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.models import ADDITION, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from .. import registry
from ..compat import InvalidTask
from ..models import Run

PERMISSION = "taskmill.enqueue_run"


class EnqueueForm(forms.Form):
    # Laid out by the admin's own fieldset template (enqueue_view), as on its change forms,
    # which also marks the required labels.
    task_path = forms.ChoiceField(label="Task")
    args = forms.CharField(
        label="Positional arguments",
        initial="[]",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text='A JSON list, e.g. [42, "report.pdf"].',
    )
    kwargs = forms.CharField(
        label="Keyword arguments",
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text='A JSON object, e.g. {"account": 42}.',
    )
    queue_name = forms.CharField(
        label="Queue", required=False, help_text="Empty: the task's own queue."
    )
    priority = forms.IntegerField(
        label="Priority", required=False, help_text="Empty: the task's own priority."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        registry.autodiscover()  # this process may not have imported the project's tasks yet
        paths = sorted(registry.registered_tasks())
        self.fields["task_path"].choices = [(path, path) for path in paths]

    def clean_args(self) -> list:
        value = _json(self.cleaned_data["args"], "positional arguments")
        if not isinstance(value, list):
            raise forms.ValidationError("Positional arguments must be a JSON list, like [1, 2].")
        return value

    def clean_kwargs(self) -> dict:
        value = _json(self.cleaned_data["kwargs"], "keyword arguments")
        if not isinstance(value, dict):
            raise forms.ValidationError('Keyword arguments must be a JSON object, like {"a": 1}.')
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        path = cleaned.get("task_path")
        if path is None or "args" not in cleaned or "kwargs" not in cleaned:
            return cleaned
        task = registry.resolve(path)
        signature = inspect.signature(task.func)
        if getattr(task, "takes_context", False):
            parameters = list(signature.parameters.values())[1:]  # the context comes first
            signature = signature.replace(parameters=parameters)
        # Shown without annotations: under postponed evaluation they read as quoted strings.
        signature = signature.replace(
            parameters=[
                parameter.replace(annotation=inspect.Parameter.empty)
                for parameter in signature.parameters.values()
            ],
            return_annotation=inspect.Signature.empty,
        )
        try:
            signature.bind(*cleaned["args"], **cleaned["kwargs"])
        except TypeError as exc:
            raise forms.ValidationError(
                f"These arguments do not fit {path}{signature}: {exc}."
            ) from None
        return cleaned


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(f"The {what} are not valid JSON: {exc}.") from None


def enqueue_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    # The form is reached from the runs list and leads to the run it made: who may not see
    # runs may not enqueue them from here either.
    if not (model_admin.has_view_permission(request) and request.user.has_perm(PERMISSION)):
        raise PermissionDenied
    form = EnqueueForm(request.POST or None, initial={"task_path": request.GET.get("task")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        overrides = {"queue_name": data["queue_name"] or None, "priority": data["priority"]}
        task = registry.resolve(data["task_path"])
        try:
            task = task.using(
                **{key: value for key, value in overrides.items() if value is not None}
            )
            result = task.enqueue(*data["args"], **data["kwargs"])
        except (InvalidTask, TypeError, ValueError) as exc:
            form.add_error(None, f"Not enqueued: {exc}")
        else:
            run = Run.objects.get(pk=int(result.id))
            LogEntry.objects.log_actions(
                request.user.pk, Run.objects.filter(pk=run.pk), ADDITION, "Enqueued from the admin"
            )
            model_admin.message_user(request, f"Enqueued run {run.pk}.", messages.SUCCESS)
            return redirect("admin:taskmill_run_change", run.pk)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Enqueue a run",
        "opts": model_admin.model._meta,
        "form": form,
        # The admin's own fieldset markup (it differs between Django 5.2 and 6): aligned
        # rows, help under each field, required labels in bold.
        "adminform": helpers.AdminForm(
            form, [(None, {"fields": list(form.fields)})], {}, model_admin=model_admin
        ),
    }
    return TemplateResponse(request, "taskmill/admin/enqueue.html", context)
