"""``max_instances``: which of a fire's times may enqueue a run while earlier runs of the
schedule have not finished, and which are skipped.

An instance is a run of the schedule that has not finished: READY (due or deferred),
WAITING (for the runs it depends on) or RUNNING; the statuses in which a run also holds its
unique key. A "run now" from the admin is a run of the schedule, so it is an instance too.
Runs enqueued on another backend are not in taskmill's tables: they are never counted.

The fire times of one fire (several when a misfire policy catches up) are taken in turn,
oldest first, and the runs of the earlier ones count: with ``max_instances=2`` and one run
still going, a catch-up of five times enqueues the oldest and skips the four others. A
skipped time is consumed (the schedule moves past it) but is not a fire: it is counted in
``skip_count``, not in ``fire_count`` nor towards ``max_fires``.

The count is read in the fire transaction, after the schedule's row (locked by the tick
where the database can lock rows): a fire by another scheduler committed after that read
fails the fire's compare-and-set, so two schedulers never both pass the same count. It
reads the schedule's runs through the (schedule, fire time) index and stops at
``max_instances`` rows, enough to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..models import Run, Schedule
from ..status import ACTIVE_STATUSES


@dataclass(frozen=True, slots=True)
class Admission:
    """A fire's times split by ``max_instances``."""

    fire_times: list[datetime]  # may enqueue a run, oldest first
    skipped: list[datetime] = field(default_factory=list)  # over the limit
    limit: int | None = None


def admit(schedule: Schedule, fire_times: Sequence[datetime], database: str) -> Admission:
    """Which of ``fire_times`` the schedule's ``max_instances`` lets through now."""
    limit = schedule.max_instances
    if limit is None or not fire_times:
        return Admission(list(fire_times))
    room = max(limit - count_unfinished(schedule.pk, limit, database), 0)
    return Admission(list(fire_times[:room]), list(fire_times[room:]), limit)


def count_unfinished(schedule_id: int, limit: int, database: str) -> int:
    """The schedule's runs still pending or running, counted up to ``limit``."""
    runs = (
        Run.objects.using(database)
        .filter(schedule_id=schedule_id, status__in=ACTIVE_STATUSES)
        .order_by()
        .values_list("pk", flat=True)
    )
    return len(runs[:limit])
