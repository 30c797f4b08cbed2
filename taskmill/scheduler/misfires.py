"""Which fire times a due schedule enqueues now, and when it is due next: the misfire rules.

Pure functions of the schedule's state and "now", so a simulated clock can drive them.

A fire time is *on time* while ``now - fire_time <= misfire_grace``; older due times are
*missed* (the schedulers were down, or the schedule waited for its dependencies). On-time
fires are always enqueued. Missed ones follow the policy:

* ``skip``: dropped;
* ``run_once``: one run for all of them, with the most recent missed time as its fire time;
* ``catch_up``: one run each, bounded.

The bound: one pass enqueues at most ``catch_up_limit`` runs per schedule (default 100,
the ``TASKMILL_SCHEDULER_CATCH_UP_LIMIT`` setting), keeping the most recent fire times and
dropping older ones with a warning. A per-second schedule back from a week's downtime thus
enqueues 100 runs, not 604,800. The cost is bounded too: the due times are found by
iterating backwards from now, never by walking the whole outage.

The fire of ``run_on_creation`` (a new schedule due at the moment it was created) is one fire
time like the others, missed or on time by the same grace, and then the schedule is due at
the first time its trigger gives after its creation: the times it would have had without it
(an interval counts from the creation, or from its ``start``, not from that fire).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

DEFAULT_CATCH_UP_LIMIT = 100
ONE_MICROSECOND = timedelta(microseconds=1)


def catch_up_limit() -> int:
    return max(
        1, int(getattr(settings, "TASKMILL_SCHEDULER_CATCH_UP_LIMIT", DEFAULT_CATCH_UP_LIMIT))
    )


@dataclass(frozen=True, slots=True)
class FirePlan:
    fire_times: list[datetime]  # to enqueue now, oldest first
    next_fire_at: datetime | None  # if every fire time enqueues a run; None: finished
    missed: bool  # some due times were beyond the grace time
    dropped: bool  # some due times were dropped by the policy or the bound
    # The trigger's next time after now (within end_at), whatever max_fires says: due next
    # if some fire times enqueue nothing (skipped) and max_fires is then not reached.
    following: datetime | None = None

    def next_after(self, schedule: Any, fired: int) -> datetime | None:
        """When ``schedule`` is due next if ``fired`` of these fire times enqueued a run:
        skipped fire times do not count towards ``max_fires``."""
        return _next_due(schedule, fired, self.following)


def _next_due(schedule: Any, fired: int, following: datetime | None) -> datetime | None:
    """``following``, unless ``fired`` more fires reach the schedule's ``max_fires``."""
    if schedule.max_fires is not None and schedule.fire_count + fired >= schedule.max_fires:
        return None
    return following


def plan(schedule: Any, now: datetime, limit: int | None = None) -> FirePlan:
    """The fires of a due ``schedule`` (``next_fire_at <= now``) at ``now``."""
    if getattr(schedule, "run_on_creation", False) and schedule.is_creation_fire():
        return _creation_plan(schedule, now)
    limit = catch_up_limit() if limit is None else limit
    first_due = schedule.next_fire_at
    trigger = schedule.trigger(anchor=first_due)
    if schedule.max_fires is not None:
        limit = min(limit, max(schedule.max_fires - schedule.fire_count, 0))
    horizon = min(now, schedule.end_at) if schedule.end_at else now
    grace_start = now - (schedule.misfire_grace or timedelta(0))

    recent = trigger.latest(first_due, horizon, limit) if limit > 0 else []
    due_itself = first_due <= horizon
    if due_itself and len(recent) < limit and (not recent or recent[0] != first_due):
        # next_fire_at is a fire time even when the trigger would not produce it (set by
        # hand, or by a bulk insert): what the schedule says is due, fires.
        recent.insert(0, first_due)
    on_time = [moment for moment in recent if moment >= grace_start]
    missed = first_due < grace_start and first_due <= horizon
    policy = schedule.misfire_policy
    if not missed or policy == "catch_up":
        fires = recent
    elif policy == "skip":
        fires = on_time
    else:  # run_once: the most recent missed time stands for all of them
        last_missed = trigger.latest(first_due, min(horizon, grace_start - ONE_MICROSECOND), 1)
        last_missed = last_missed or [first_due]
        fires = (last_missed + on_time)[-limit:] if limit > 0 else []
    # Something was dropped (by the policy, the coalescing or the bound) exactly when the
    # earliest due time is not among the fires: they always end at the latest due times.
    dropped = due_itself and (not fires or fires[0] != first_due)

    following = trigger.after(now)
    if following is not None and schedule.end_at and following > schedule.end_at:
        following = None
    next_fire_at = _next_due(schedule, len(fires), following)
    return FirePlan(fires, next_fire_at, missed, dropped, following)


def _creation_plan(schedule: Any, now: datetime) -> FirePlan:
    """The fire of ``run_on_creation`` (its time is ``next_fire_at``, the creation), then the
    schedule's own first time after it; the fires its trigger had since (a scheduler slow to
    come) are the next tick's, under the misfire policy."""
    created = schedule.next_fire_at
    missed = created < now - (schedule.misfire_grace or timedelta(0))
    dropped = missed and schedule.misfire_policy == "skip"
    fires = [] if dropped else [created]
    following = schedule.compute_next_fire(created)
    if following is not None and following <= created:
        # A once-schedule whose time had passed at its creation: the creation's fire
        # stands for it.
        following = None
    return FirePlan(fires, _next_due(schedule, len(fires), following), missed, dropped, following)
