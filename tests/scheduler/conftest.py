"""Helpers for the scheduler tests: schedules created at a simulated time, a simulated clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from django.db.models import Min
from django.utils import timezone

from taskmill.models import Run, Schedule
from taskmill.scheduler import declarations, firing
from tests.conftest import WorkerProcess, wait_until
from tests.testapp import scheduled_tasks  # noqa: F401  (registers the tasks schedules name)

TASK = "tests.testapp.scheduled_tasks.heartbeat"


def make_schedule(now: datetime, **fields) -> Schedule:
    """A saved schedule whose first fire time is computed as if created at ``now``."""
    fields.setdefault("task_path", TASK)
    fields.setdefault("name", f"schedule-{Schedule.objects.count()}")
    fields.setdefault("timezone", "UTC")
    schedule = Schedule(**fields)
    schedule.full_clean()
    schedule.save()
    schedule.next_fire_at = schedule.compute_next_fire(now)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=schedule.next_fire_at)
    return schedule


def simulate(until: datetime) -> int:
    """Tick at each next fire time up to ``until`` (a clock that jumps); return ticks run."""
    ticks = 0
    while True:
        upcoming = Schedule.objects.filter(enabled=True).aggregate(at=Min("next_fire_at"))["at"]
        if upcoming is None or upcoming > until:
            return ticks
        firing.tick(now=upcoming)
        ticks += 1


def fire_times(schedule: Schedule) -> list[datetime]:
    return list(
        Run.objects.filter(schedule=schedule)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )


@pytest.fixture
def clean_declarations() -> Iterator[None]:
    """Code declarations made by a test do not leak into the next one."""
    saved = declarations.declarations()
    declarations._declarations.clear()
    yield
    declarations._declarations.clear()
    declarations._declarations.update(saved)


class SchedulerProcess(WorkerProcess):
    """A real ``manage.py taskmill scheduler`` process."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        super().__init__(args, env, subcommand="scheduler")


@pytest.fixture
def scheduler_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    # These settings add tests.scheduler as an app, so its schedules.py is discovered.
    return {**subprocess_env, "DJANGO_SETTINGS_MODULE": "tests.scheduler.settings"}


@pytest.fixture
def start_scheduler(scheduler_env: dict[str, str]) -> Iterator[Callable[..., SchedulerProcess]]:
    started: list[SchedulerProcess] = []

    def start(*args: str) -> SchedulerProcess:
        process = SchedulerProcess([*args], scheduler_env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def run_to_the_end(processes: list[SchedulerProcess], seconds: float) -> None:
    """Wait until every schedule has reached its end (no next fire time), then stop the
    schedulers gracefully and check that each exited cleanly."""
    wait_until(
        lambda: not Schedule.objects.filter(next_fire_at__isnull=False).exists(),
        timeout=seconds + 60,
        interval=0.5,
        message="every schedule to reach its end",
    )
    for process in processes:
        process.signal()
    for process in processes:
        assert process.wait(30) == 0, process.output


@pytest.fixture
def existing() -> Schedule:
    """A stored schedule that the bad documents of the import tests would also update."""
    return make_schedule(
        timezone.now(), name="existing", kind="interval", interval=timedelta(minutes=5)
    )
