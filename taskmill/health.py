"""Is taskmill healthy? The checks behind ``manage.py taskmill health``, for container health
checks, cron and the admin: each problem is one line an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass, field

from .conf import setting
from .overview import late_schedules, queue_overview, worker_overview


@dataclass
class Health:
    problems: list[str] = field(default_factory=list)
    # Things seen and deliberately not counted as problems (a paused queue's backlog).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_health(
    database: str = "default", *, max_ready_age: float = 300.0, schedule_grace: float = 60.0
) -> Health:
    """Problems an operator must act on: no live worker, a ready run waiting longer than
    ``max_ready_age`` seconds in a queue that is not paused, a schedule later than
    ``schedule_grace`` seconds."""
    health = Health()
    if not any(worker.alive for worker in worker_overview(database)):
        health.problems.append(
            f"no worker is alive (none has a heartbeat younger than TASKMILL_LEASE, "
            f"{float(setting('TASKMILL_LEASE')):g}s)"
        )
    for queue in queue_overview(database):
        age = queue.oldest_ready_age
        if age is None or age <= max_ready_age:
            continue
        ready = queue.shown("ready")
        what = f"queue {queue.name!r}: {ready} ready, the oldest waiting {age:,.0f}s"
        if queue.paused:
            health.notes.append(f"{what} (paused, not counted)")
        else:
            health.problems.append(f"{what} (more than {max_ready_age:g}s)")
    for schedule in late_schedules(database, grace=schedule_grace):
        why = ""
        if schedule.waiting_until is not None:
            why = f"; held back until {schedule.waiting_until.isoformat()}"
            if schedule.last_error:
                why += f": {schedule.last_error.splitlines()[0]}"
            else:
                why += " (waiting for its dependencies)"
        health.problems.append(
            f"schedule {schedule.name!r} is {schedule.lateness:,.0f}s late (due "
            f"{schedule.next_fire_at.isoformat()}{why})"
        )
    return health
