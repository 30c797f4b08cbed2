"""Dependencies between schedules: a directed acyclic graph.

A schedule with dependencies fires only when each dependency has had a run finish
successfully since the dependent's last fire was enqueued. The first fire is free ("future
depends"): a new dependent does not wait for history it never saw. A due fire whose
dependencies are not met waits (re-checked every few seconds) and is subject to the
misfire rules like any late fire.

Successes are read from taskmill's runs, so a dependency must enqueue on a taskmill
backend; and a dependency's success must still be stored (not pruned) when the dependent
looks for it.

That the graph stays acyclic is the model's own rule (``Schedule.check_acyclic``, in force on
every edge added), since a cycle is an invalid definition, not something the scheduler meets.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..models import Run, RunStatus, Schedule

Edge = Schedule.depends_on.through


def dependencies_of(schedule_ids: Iterable[int], database: str) -> dict[int, list[int]]:
    """Dependency ids of each schedule, in one query."""
    found: dict[int, list[int]] = {}
    rows = Edge.objects.using(database).filter(from_schedule_id__in=list(schedule_ids))
    for source, target in rows.values_list("from_schedule_id", "to_schedule_id"):
        found.setdefault(source, []).append(target)
    return found


def dependencies_met(
    last_enqueued_at: datetime | None, dependency_ids: list[int], database: str
) -> bool:
    if not dependency_ids or last_enqueued_at is None:
        return True  # no dependencies, or the first fire: free
    succeeded = set(
        Run.objects.using(database)
        .filter(
            schedule_id__in=dependency_ids,
            status=RunStatus.SUCCESSFUL,
            finished_at__gt=last_enqueued_at,
        )
        .values_list("schedule_id", flat=True)
        .distinct()
    )
    return succeeded >= set(dependency_ids)
