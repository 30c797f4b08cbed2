"""Dependencies between schedules: a directed acyclic graph.

A schedule with dependencies fires only when each dependency has had a run finish
successfully since the dependent's last fire was enqueued. The first fire is free ("future
depends"): a new dependent does not wait for history it never saw. A due fire whose
dependencies are not met waits (re-checked every few seconds) and is subject to the
misfire rules like any late fire.

Successes are read from taskmill's runs, so a dependency must enqueue on a taskmill
backend; and a dependency's success must still be stored (not pruned) when the dependent
looks for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import ValidationError

from ..compat import TaskResultStatus
from ..models import Run, Schedule

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
            status=TaskResultStatus.SUCCESSFUL,
            finished_at__gt=last_enqueued_at,
        )
        .values_list("schedule_id", flat=True)
        .distinct()
    )
    return succeeded >= set(dependency_ids)


def find_cycle(schedule_id: int | None, dependency_ids: Iterable[int], database: str) -> list[int]:
    """The path back to ``schedule_id`` if it depended on ``dependency_ids``; [] if none."""
    if schedule_id is None:
        return []  # a new schedule has no dependents yet: it cannot close a cycle
    # Breadth-first through what the new dependencies depend on, one query per level.
    parents: dict[int, int] = {}
    frontier = []
    for dependency in dependency_ids:
        if dependency == schedule_id:
            return [schedule_id, schedule_id]
        if dependency not in parents:
            parents[dependency] = schedule_id
            frontier.append(dependency)
    while frontier:
        edges = Edge.objects.using(database).filter(from_schedule_id__in=frontier)
        frontier = []
        for source, target in edges.values_list("from_schedule_id", "to_schedule_id"):
            if target == schedule_id:
                path = [schedule_id, source]
                while path[-1] != schedule_id:
                    path.append(parents[path[-1]])
                path.reverse()
                return path
            if target not in parents:
                parents[target] = source
                frontier.append(target)
    return []


def check_acyclic(schedule: Schedule, dependency_ids: Iterable[int], database: str) -> None:
    """Raise ``ValidationError`` naming the cycle if these dependencies would close one."""
    cycle = find_cycle(schedule.pk, dependency_ids, database)
    if cycle:
        names = dict(
            Schedule.objects.using(database).filter(pk__in=set(cycle)).values_list("pk", "name")
        )
        names[schedule.pk] = schedule.name
        path = " -> ".join(names.get(pk, str(pk)) for pk in cycle)
        raise ValidationError(
            f"Schedule dependencies must not form a cycle: {path} (each depends on the next).",
            code="cycle",
        )


def reject_cycles(instance: Schedule, reverse: bool, pk_set: set[int], using: str) -> None:
    """Called before any edge is added (a form, the shell, the code sync): no cycles."""
    if not reverse:
        check_acyclic(instance, pk_set, using)
        return
    for dependent in Schedule.objects.using(using).filter(pk__in=pk_set):
        check_acyclic(dependent, [instance.pk], using)
