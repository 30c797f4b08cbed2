"""Schedules in the admin: edited there, or declared in code and shown read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html_join

from ..models import Schedule
from ..schedule_control import pause_schedule, resume_schedule
from ..schedule_rules import schedulable_tasks
from . import display, masking, schedule_list, schedule_views


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return Schedule.State.choices

    def queryset(self, request, queryset):
        return queryset.in_state(self.value()) if self.value() else queryset


class ScheduleForm(forms.ModelForm):
    """The task is a choice among tasks declared in code; dependency cycles are refused here."""

    class Meta:
        model = Schedule
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "task_path" in self.fields:
            from ..scheduler.declarations import autodiscover

            autodiscover()  # this process may not have imported the project's tasks yet
            paths = sorted(schedulable_tasks())
            if self.instance.task_path and self.instance.task_path not in paths:
                paths.append(self.instance.task_path)  # shown, and refused by clean()
            field = self.fields["task_path"]
            self.fields["task_path"] = forms.ChoiceField(
                choices=[("", "---------"), *((path, path) for path in paths)],
                label=field.label,
                help_text="Only tasks declared in code can be scheduled.",
            )
        # Sensitive values are shown masked here too; a mask left as it is keeps the value.
        for name in ("args", "kwargs"):
            if name in self.fields and self.instance.pk:
                self.initial[name] = masking.masked_value(getattr(self.instance, name))
                self.fields[name].help_text = (
                    f"Values under {', '.join(sorted(masking.masked_keys()))} are shown as "
                    f"{masking.MASK}: leave it to keep the value, or type a new one."
                )

    def clean_args(self):
        return masking.unmasked(self.cleaned_data["args"], self.instance.args)

    def clean_kwargs(self):
        return masking.unmasked(self.cleaned_data["kwargs"], self.instance.kwargs)

    def clean(self):
        cleaned = super().clean()
        dependencies = cleaned.get("depends_on")
        if dependencies is not None and self.instance.pk:
            try:
                database = self.instance._state.db or "default"
                self.instance.check_acyclic([d.pk for d in dependencies], database)
            except ValidationError as exc:
                self.add_error("depends_on", exc)
        return cleaned


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    # What fits at 1,280 pixels; schedule_list.py says what shares a cell and why.
    list_display = (
        "name",
        schedule_list.task_path,
        schedule_list.when,
        schedule_list.state_badge,
        schedule_list.fires,
    )
    list_filter = (StateFilter, "kind", "code_owned", "misfire_policy")
    search_fields = ("name", "task_path")
    ordering = ("name",)
    filter_horizontal = ("depends_on",)
    state_fields = (*Schedule.STATE_FIELDS, "code_owned", "created_at", "updated_at")
    shown_arguments = ("masked_args", "masked_kwargs")
    fieldsets = (
        (None, {"fields": ("name", "task_path", "args", "kwargs", "enabled", "code_owned")}),
        (
            "When",
            {
                "fields": (
                    "kind",
                    "cron",
                    "interval",
                    "run_at",
                    "timezone",
                    "start_at",
                    "end_at",
                    "max_fires",
                    "max_instances",
                    "run_on_creation",
                )
            },
        ),
        ("Where", {"fields": ("queue_name", "priority", "backend")}),
        (
            "Late fires and dependencies",
            {"fields": ("misfire_grace", "misfire_policy", "fire_time_kwarg", "depends_on")},
        ),
        (
            "State",
            {
                "fields": (
                    "paused",
                    "paused_at",
                    "next_fire_at",
                    "last_fire_at",
                    "last_enqueued_at",
                    "fire_count",
                    "skip_count",
                    "blocked_until",
                    "last_error",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    actions = ["run_now", "pause", "resume", "enable", "disable"]

    def has_pause_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.pause_schedule")

    @admin.action(description="Pause (code-declared ones too)", permissions=["pause"])
    def pause(self, request, queryset):
        self._pause(request, queryset, pause_schedule, "Paused")

    @admin.action(
        description="Resume (missed fires follow the misfire policy)", permissions=["pause"]
    )
    def resume(self, request, queryset):
        self._pause(request, queryset, resume_schedule, "Resumed")

    def _pause(self, request, queryset, operation, verb: str) -> None:
        changed = [s for s in queryset if operation(s.pk)]
        for schedule in changed:
            self.log_change(request, schedule, verb)
        names = ", ".join(s.name for s in changed) or "nothing to change"
        self.message_user(request, f"{verb}: {names}.", messages.SUCCESS)

    class Media:
        css = {"all": ("taskmill/control-room.css",)}

    def get_fieldsets(self, request, obj=None):
        fieldsets = self.fieldsets
        if obj is not None:
            fieldsets = (*fieldsets, ("Upcoming and recent", {"fields": ("upcoming", "recent")}))
        return [
            (title, {**group, "fields": self._argument_fields(request, obj, group["fields"])})
            for title, group in fieldsets
        ]

    def _argument_fields(self, request, obj, fields) -> list[str]:
        """Arguments as runs show them: not at all without the permission to see them, and
        masked where they are only shown (not edited: the form masks its own)."""
        if not masking.may_see_arguments(request):
            return [name for name in fields if name not in ("args", "kwargs")]
        shown_only = obj is not None and (
            obj.code_owned or not self.has_change_permission(request, obj)
        )
        if not shown_only:
            return list(fields)
        return [{"args": "masked_args", "kwargs": "masked_kwargs"}.get(n, n) for n in fields]

    @admin.display(description="positional arguments")
    def masked_args(self, obj: Schedule) -> str:
        return display.pretty_json(masking.masked_arguments(obj)[0])

    @admin.display(description="keyword arguments")
    def masked_kwargs(self, obj: Schedule) -> str:
        return display.pretty_json(masking.masked_arguments(obj)[1])

    @admin.display(description=f"next {schedule_views.UPCOMING} fire times (its time zone)")
    def upcoming(self, obj: Schedule) -> str:
        times = schedule_views.next_fire_times(obj)
        if not times:
            return "none: " + ("disabled" if not obj.enabled else "it has fired for the last time")
        return format_html_join(
            "", "<div>{}</div>", ((f"{t:%a %Y-%m-%d %H:%M:%S %Z}",) for t in times)
        )

    @admin.display(description="recent runs")
    def recent(self, obj: Schedule) -> str:
        runs = schedule_views.recent_runs(obj)
        if not runs:
            return "none yet"
        rows = [
            (
                reverse("admin:taskmill_run_change", args=[run.pk]),
                run.pk,
                display.moment(run.scheduled_for) if run.scheduled_for else "run now",
                run.status,
                display.between(run.last_attempted_at, run.finished_at),
            )
            for run in runs
        ]
        return format_html_join("", '<div><a href="{}">#{}</a> fire {}: {} ({})</div>', rows)

    def has_run_now_permission(self, request) -> bool:
        return request.user.has_perm("taskmill.enqueue_run")

    @admin.action(description="Run now (enqueue one run of each)", permissions=["run_now"])
    def run_now(self, request, queryset):
        enqueued = []
        for schedule in queryset:
            run = schedule_views.run_now(schedule)
            enqueued.append(f"{schedule.name} → run {run.pk}")
            self.log_change(request, schedule, f"Run now: enqueued run {run.pk}")
        self.message_user(request, "Enqueued: " + "; ".join(enqueued), messages.SUCCESS)

    @admin.action(description="Enable (schedules made here)", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable (schedules made here)", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool) -> None:
        changed, skipped = [], []
        for schedule in queryset:
            if schedule.code_owned:
                skipped.append(schedule.name)  # the code's sync decides; pause it instead
                continue
            if schedule.enabled != enabled:
                schedule.enabled = enabled
                schedule.save()
                self.log_change(request, schedule, "Enabled" if enabled else "Disabled")
                changed.append(schedule.name)
        text = f"{'Enabled' if enabled else 'Disabled'}: {', '.join(changed) or 'none'}."
        if skipped:
            text += f" Declared in code, left as the code says: {', '.join(skipped)}."
        self.message_user(request, text, messages.WARNING if skipped else messages.SUCCESS)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.code_owned:
            # The code is the source of truth: an edit here would be undone by the next sync.
            return [field.name for field in Schedule._meta.fields if not field.primary_key] + [
                "depends_on",
                "upcoming",
                "recent",
                *self.shown_arguments,
            ]
        # The pause is the operator's state: changed by the pause and resume actions only.
        return (*self.state_fields, "paused", "paused_at", "upcoming", "recent",
                *self.shown_arguments)  # fmt: skip
