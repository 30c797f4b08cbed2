"""Storage: one row per schedule, its definition and the state the scheduler keeps for it.

The row's own state decides what fires next (``next_fire_at``, advanced by compare-and-set
in the fire transaction), so pruning runs can never make a schedule fire a time again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..schedule_rules import creation_fire_pending, find_cycle, validate_schedule
from ..triggers import IntervalTrigger, OnceTrigger, Trigger, cron_trigger


def default_time_zone() -> str:
    return getattr(settings, "TIME_ZONE", None) or "UTC"


def _nothing_left() -> Q:
    """Schedules whose trigger has no fire time left, whether enabled or not: a once-schedule
    that fired its time, one that reached ``max_fires``, one whose ``end`` has passed."""
    return (
        Q(kind="once", last_fire_at__isnull=False, run_at__isnull=False)
        & Q(last_fire_at__gte=F("run_at"))
        | Q(max_fires__isnull=False) & Q(fire_count__gte=F("max_fires"))
        | Q(end_at__lt=timezone.now())
    )


def _done() -> Q:
    # No next fire time: an enabled schedule is finished (the scheduler cleared it after its
    # last fire); a disabled one (whose next fire time is always empty) only if enabling it
    # again would fire nothing either.
    return Q(next_fire_at__isnull=True) & (Q(enabled=True) | _nothing_left())


class ScheduleQuerySet(models.QuerySet):
    def done(self) -> ScheduleQuerySet:
        """Schedules with nothing left to fire (``Schedule.is_done``)."""
        return self.filter(_done())

    def in_state(self, state: str) -> ScheduleQuerySet:
        """Schedules whose ``Schedule.state`` is ``state`` (a ``Schedule.State``), in SQL:
        what an admin list filter needs."""
        State = Schedule.State
        if state == State.DONE:
            return self.done()
        pending = self.exclude(pk__in=self.model._base_manager.filter(_done()).values("pk"))
        if state == State.DISABLED:
            return pending.filter(enabled=False)
        if state == State.PAUSED:
            return pending.filter(enabled=True, paused=True)
        if state == State.SCHEDULED:
            return pending.filter(enabled=True, paused=False)
        raise ValueError(f"Unknown schedule state {state!r}.")


class Schedule(models.Model):
    """Run a task once at a time, every interval, or on a cron expression in a time zone."""

    class Kind(models.TextChoices):
        ONCE = "once", _("once, at a time")
        INTERVAL = "interval", _("every interval")
        CRON = "cron", _("cron expression")

    class MisfirePolicy(models.TextChoices):
        SKIP = "skip", _("skip missed fires")
        RUN_ONCE = "run_once", _("run once for all missed fires")
        CATCH_UP = "catch_up", _("run every missed fire (bounded)")

    class State(models.TextChoices):
        """What a schedule is doing, as an operator reads it (``Schedule.state``)."""

        SCHEDULED = "scheduled", _("scheduled")
        PAUSED = "paused", _("paused")
        DISABLED = "disabled", _("disabled")
        DONE = "done", _("done")

    # What changing one of these means: the next fire time is computed afresh.
    DEFINITION_FIELDS = (
        "kind",
        "cron",
        "interval",
        "run_at",
        "timezone",
        "start_at",
        "end_at",
        "max_fires",
        "enabled",
    )
    # Written by the scheduler only; a form or a code sync saving a row never overwrites them.
    STATE_FIELDS = (
        "next_fire_at",
        "last_fire_at",
        "last_enqueued_at",
        "fire_count",
        "skip_count",
        "blocked_until",
        "last_error",
    )
    # The operator's pause: written only by pause_schedule() / resume_schedule(), never by a
    # form, a code sync or an import saving a row (they would overwrite it with a stale copy).
    OPERATOR_FIELDS = ("paused", "paused_at")

    name = models.CharField(_("name"), max_length=200, unique=True)
    task_path = models.CharField(_("task"), max_length=255)
    args = models.JSONField(_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    queue_name = models.CharField(
        _("queue"), max_length=64, blank=True, default="", help_text=_("Blank: the task's queue.")
    )
    priority = models.SmallIntegerField(
        _("priority"), null=True, blank=True, help_text=_("Blank: the task's priority.")
    )
    backend = models.CharField(
        _("backend alias"),
        max_length=64,
        blank=True,
        default="",
        help_text=_("The TASKS backend to enqueue on. Blank: the task's own backend."),
    )

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    cron = models.CharField(
        _("cron expression"),
        max_length=200,
        blank=True,
        default="",
        help_text=_("5 fields (minute hour day month weekday) or 6 with seconds first."),
    )
    interval = models.DurationField(_("interval"), null=True, blank=True)
    run_at = models.DateTimeField(_("run at"), null=True, blank=True)
    timezone = models.CharField(
        _("time zone"),
        max_length=64,
        default=default_time_zone,
        help_text=_("IANA name; cron expressions are evaluated in it."),
    )
    start_at = models.DateTimeField(_("start"), null=True, blank=True)
    end_at = models.DateTimeField(_("end"), null=True, blank=True)
    max_fires = models.PositiveIntegerField(_("maximum number of fires"), null=True, blank=True)
    max_instances = models.PositiveIntegerField(
        _("maximum instances"),
        null=True,
        blank=True,
        help_text=_(
            "At most this many runs of the schedule pending or running at once; a fire that "
            "would make one more is skipped. Blank: no limit."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    run_on_creation = models.BooleanField(
        _("run on creation"),
        default=False,
        db_default=False,
        help_text=_("A new schedule fires once at once, then keeps its times."),
    )

    misfire_grace = models.DurationField(
        _("misfire grace time"),
        default=timedelta(seconds=60),
        help_text=_("A fire later than this is a misfire, handled by the misfire policy."),
    )
    misfire_policy = models.CharField(
        _("misfire policy"),
        max_length=10,
        choices=MisfirePolicy.choices,
        default=MisfirePolicy.RUN_ONCE,
    )
    fire_time_kwarg = models.CharField(
        _("fire time keyword argument"),
        max_length=100,
        blank=True,
        default="",
        help_text=_("If set, the task receives the fire time (ISO 8601, UTC) in this argument."),
    )
    depends_on = models.ManyToManyField(
        "self",
        symmetrical=False,
        related_name="dependents",
        blank=True,
        verbose_name=_("depends on"),
        help_text=_(
            "Fires only when each of these has finished successfully since this one's last "
            "fire (the first fire is free)."
        ),
    )
    paused = models.BooleanField(
        _("paused"),
        default=False,
        help_text=_(
            "Paused by an operator: does not fire until resumed, then fires what it missed "
            "as its misfire policy says. Code declarations never change it."
        ),
    )
    paused_at = models.DateTimeField(_("paused at"), null=True, blank=True)
    code_owned = models.BooleanField(
        _("declared in code"),
        default=False,
        help_text=_("Created by @taskmill.schedule; the code sync keeps it up to date."),
    )

    # The scheduler's state. The tick reads only rows whose next fire time has come.
    next_fire_at = models.DateTimeField(_("next fire time"), null=True, blank=True, db_index=True)
    last_fire_at = models.DateTimeField(_("last fire time"), null=True, blank=True)
    # When the last fire was enqueued (the wall clock, not the fire time): dependencies
    # count successes "since the last fire" from here.
    last_enqueued_at = models.DateTimeField(_("last enqueued at"), null=True, blank=True)
    fire_count = models.PositiveIntegerField(_("fire count"), default=0)
    # Fire times that enqueued nothing: max_instances runs were still pending or running, or
    # a run of a unique task held its key. Neither a fire nor counted towards max_fires.
    skip_count = models.PositiveIntegerField(_("skipped fires"), default=0, db_default=0)
    # Set while a due fire waits for its dependencies, or retries after an error, so the
    # tick does not re-read it on every pass.
    blocked_until = models.DateTimeField(_("waiting until"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True, default="")

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        db_table = "taskmill_schedule"
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ["name"]
        permissions = [("pause_schedule", _("Can pause and resume schedules"))]
        indexes = [
            # The tick's and the sleep's queries (taskmill.scheduler.firing): the schedules
            # that may fire, by next fire time. With enabled and paused leading the key, a
            # schedule paused while due (its next fire time stays in the past) is outside the
            # range they read; on next_fire_at alone each tick filtered out every one of them.
            models.Index(fields=["enabled", "paused", "next_fire_at"], name="taskmill_schedule_due")
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, *args: Any, **kwargs: Any):
        instance = super().from_db(db, field_names, values, *args, **kwargs)
        instance._loaded_definition = instance._definition()
        return instance

    def refresh_from_db(self, using: Any = None, fields: Any = None, **kwargs: Any) -> None:
        super().refresh_from_db(using, fields, **kwargs)
        loaded = getattr(self, "_loaded_definition", None)
        if fields is None or loaded is None:
            self._loaded_definition = self._definition()
        else:  # a deferred field read on demand: it is part of the stored definition
            loaded.update(self._definition(only=fields))

    def _definition(self, only: Any = None) -> dict[str, Any]:
        """The fields that decide fire times, as they are now. A field left out by
        only()/defer() is left out here too: reading it would load it, and loading calls
        from_db, which would read it again, for ever."""
        deferred = self.get_deferred_fields()
        names = self.DEFINITION_FIELDS if only is None else set(only) & set(self.DEFINITION_FIELDS)
        return {name: getattr(self, name, None) for name in names if name not in deferred}

    @property
    def definition_changed(self) -> bool:
        loaded = getattr(self, "_loaded_definition", None)
        if loaded is None:
            return True
        current = self._definition()
        return current.keys() != loaded.keys() or any(
            current[name] != value for name, value in loaded.items()
        )

    # -- what it is doing ---------------------------------------------------------------

    @property
    def is_done(self) -> bool:
        """Nothing left to fire: a once-schedule that fired, one that reached ``max_fires``
        or passed its ``end``, or any enabled schedule without a next fire time. A disabled
        schedule is done only if enabling it would fire nothing either.
        (``Schedule.objects.done()`` is the same in SQL.)"""
        if self.next_fire_at is not None:
            return False
        return self.enabled or self._nothing_left()

    def _nothing_left(self) -> bool:
        once = self.kind == self.Kind.ONCE and self.last_fire_at and self.run_at
        if once and self.last_fire_at >= self.run_at:
            return True
        if self.max_fires is not None and self.fire_count >= self.max_fires:
            return True
        return self.end_at is not None and self.end_at < timezone.now()

    @property
    def state(self) -> str:
        """A ``Schedule.State``: done, else disabled, else paused, else scheduled.
        (``Schedule.objects.in_state(state)`` is the same in SQL.)"""
        if self.is_done:
            return self.State.DONE
        if not self.enabled:
            return self.State.DISABLED
        return self.State.PAUSED if self.paused else self.State.SCHEDULED

    # -- validation -----------------------------------------------------------------------

    def clean_fields(self, exclude: Any = None) -> None:
        # The arguments are checked by clean() (validate_schedule), as strictly as an
        # enqueue checks them; Django's own JSONField check is weaker and raises a bare
        # ValueError on an integer too long to write as text.
        super().clean_fields(exclude={*(exclude or ()), "args", "kwargs"})

    def clean(self) -> None:
        errors = validate_schedule(self)
        if errors:
            raise ValidationError(errors)

    # -- the trigger and the first fire ------------------------------------------------------

    def trigger(self, anchor: datetime | None = None) -> Trigger:
        """This schedule's trigger; interval occurrences count from ``anchor``."""
        if self.kind == self.Kind.ONCE:
            return OnceTrigger(self.run_at)
        if self.kind == self.Kind.INTERVAL:
            return IntervalTrigger(anchor or self.start_at or timezone.now(), self.interval)
        return cron_trigger(self.cron, self.timezone)

    def compute_next_fire(self, now: datetime) -> datetime | None:
        """The first fire time from ``now`` on, as when the schedule is created or edited.

        Never at or before the last fire: an edit cannot make a fired time fire again.
        """
        if not self.enabled:
            return None
        if self.max_fires is not None and self.fire_count >= self.max_fires:
            return None
        floor = max(now, self.last_fire_at) if self.last_fire_at else now
        if self.kind == self.Kind.ONCE:
            # A past time still fires (or misfires) once: the misfire policy decides.
            first = self.run_at
            if self.last_fire_at and first <= self.last_fire_at:
                first = None
        elif self.kind == self.Kind.INTERVAL:
            if self.start_at and self.start_at > floor:
                first = self.start_at
            elif self.start_at:
                first = self.trigger(anchor=self.start_at).after(floor)
            else:
                first = floor + self.interval
        else:
            after = floor
            if self.start_at and self.start_at > floor:
                after = self.start_at - timedelta(microseconds=1)
            first = self.trigger().after(after)
        if first is not None and self.end_at and first > self.end_at:
            return None
        return first

    def fires_on_creation(self, now: datetime) -> bool:
        """Whether this schedule, created now, fires once at once: ``run_on_creation``, created
        enabled, and not already past its end. Only a new row: a schedule that exists (an
        edit, a deploy's sync updating it) never fires for it."""
        return (
            self.run_on_creation
            and self.enabled
            and (self.max_fires is None or self.max_fires > 0)
            and not (self.end_at is not None and self.end_at < now)
        )

    # What says whether a row's creation fire is still to come (``is_creation_fire``).
    _CREATION_FIRE_STATE = (
        "run_on_creation",
        "last_fire_at",
        "fire_count",
        "skip_count",
        "next_fire_at",
        "created_at",
    )

    def is_creation_fire(self) -> bool:
        """Whether the due ``next_fire_at`` is the fire of ``run_on_creation``: the moment
        ``save()`` took just before Django stamped ``created_at``, before any fire or skip.
        (No fire time the trigger computes lies at or before the creation.)"""
        return creation_fire_pending(
            **{name: getattr(self, name) for name in self._CREATION_FIRE_STATE}
        )

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the definition; never overwrite the scheduler's state with a stale copy.

        A changed trigger (or enabling) computes the next fire time afresh, from now and
        after the last fire as stored, so an edit cannot make a fired time fire again. A new
        schedule with ``run_on_creation`` is due at once (``fires_on_creation``).
        """
        adding = self._state.adding
        recompute = adding or self.definition_changed
        if recompute:
            now = timezone.now()
            creation_fire = now if adding else None
            if not adding:
                fresh = (
                    type(self)
                    ._base_manager.using(kwargs.get("using") or self._state.db)
                    .filter(pk=self.pk)
                    .values(*self._CREATION_FIRE_STATE)
                    .first()
                )
                if fresh:  # a scheduler may have fired since this instance was read
                    self.last_fire_at = fresh["last_fire_at"]
                    self.fire_count = fresh["fire_count"]
                    if creation_fire_pending(**fresh):
                        # Edited before any scheduler fired it: still a new schedule's fire.
                        creation_fire = fresh["next_fire_at"]
            self.next_fire_at = self.compute_next_fire(now)
            if creation_fire is not None and self.fires_on_creation(now):
                # Due now: the scheduler fires it through the same compare-and-set as any
                # fire, so once however many schedulers run; the fire then moves it on to
                # the times it would have had (taskmill.scheduler.misfires).
                self.next_fire_at = creation_fire
            self.blocked_until = None
            self.last_error = ""
        if not adding:
            state = ("next_fire_at", "blocked_until", "last_error") if recompute else ()
            if kwargs.get("update_fields") is None:
                kwargs["update_fields"] = self._editable_fields(*state)
            else:
                kwargs["update_fields"] = {*kwargs["update_fields"], *state}
        super().save(*args, **kwargs)
        self._loaded_definition = self._definition()

    def _editable_fields(self, *state: str) -> list[str]:
        names = [
            field.attname
            for field in self._meta.concrete_fields
            if not field.primary_key
            and field.name not in self.STATE_FIELDS
            and field.name not in self.OPERATOR_FIELDS
        ]
        return names + list(state)

    # -- dependencies -----------------------------------------------------------------------

    def check_acyclic(self, dependency_ids: Iterable[int], using: str) -> None:
        """Raise ``ValidationError`` naming the cycle if these dependencies would close one."""
        edges = type(self).depends_on.through.objects.using(using)

        def edges_from(ids: list[int]) -> Iterable[tuple[int, int]]:
            rows = edges.filter(from_schedule_id__in=ids)
            return rows.values_list("from_schedule_id", "to_schedule_id")

        cycle = find_cycle(self.pk, dependency_ids, edges_from)
        if cycle:
            names = dict(
                type(self).objects.using(using).filter(pk__in=set(cycle)).values_list("pk", "name")
            )
            names[self.pk] = self.name
            path = " -> ".join(names.get(pk, str(pk)) for pk in cycle)
            raise ValidationError(
                f"Schedule dependencies must not form a cycle: {path} (each depends on the next).",
                code="cycle",
            )


@receiver(m2m_changed, sender=Schedule.depends_on.through, dispatch_uid="taskmill_schedule_dag")
def _reject_dependency_cycles(sender, instance, action, reverse, pk_set, using, **kwargs) -> None:
    # Connected here, where the model is defined, so that it is always in force: before any
    # edge is added (a form, the shell, the code sync, an import), no cycles.
    if action != "pre_add" or not pk_set:
        return
    if not reverse:
        instance.check_acyclic(pk_set, using)
        return
    for dependent in Schedule.objects.using(using).filter(pk__in=pk_set):
        dependent.check_acyclic([instance.pk], using)
