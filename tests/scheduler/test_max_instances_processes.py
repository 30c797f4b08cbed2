"""max_instances with real processes: a worker running a 3-second task fired every second,
and four schedulers racing on the same schedules."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from taskmill.models import Run, RunStatus, Schedule
from taskmill.status import ACTIVE_STATUSES
from tests.conftest import wait_until

from .conftest import TASK, make_schedule, run_to_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SKIPPED = re.compile(
    r"Schedule '([^']+)' skipped its fire at (\S+): (\d+) of its runs still pending or "
    r"running \(max_instances=(\d+)\)$"
)


def skipped_in(lines: list[str]) -> list[tuple[str, datetime]]:
    """(schedule name, fire time) of each skip line."""
    return [
        (match[1], datetime.fromisoformat(match[2]))
        for line in lines
        if (match := SKIPPED.search(line))
    ]


def test_a_3_second_run_on_a_1_second_cron_with_max_instances_1(start_worker):
    """The proof of issue 23: never two runs at once, every due second either fired or
    skipped with one log line, skips only while a run was unfinished, and the share fired
    in a band a broken limit would leave.

    Expected share: a run fired at T starts just after T and ends just after T+3, so the
    fires at T+1, T+2 and T+3 find it unfinished and T+4 fires: a quarter of the seconds
    fire (a fifth if the run starts late, a third if the scheduler's T+3 comes after the
    run's end). Without the limit all would fire."""
    seconds = 12
    schedule = make_schedule(
        timezone.now(),
        name="overlapping",
        task_path="tests.testapp.tasks.timed_sleep",
        kwargs={"seconds": 3, "marker": "overlap"},
        kind="cron",
        cron="* * * * * *",
        max_instances=1,
        # Nothing dropped by the misfire rules: each due second is fired or skipped.
        misfire_policy="catch_up",
        misfire_grace=timedelta(minutes=5),
        start_at=timezone.now() + timedelta(hours=1),  # parked until the worker is up
    )
    worker = start_worker("--concurrency", "4")
    worker.wait_for_output("Scheduler started")
    start = (timezone.now() + timedelta(seconds=2)).replace(microsecond=0)
    due = [start + timedelta(seconds=k) for k in range(seconds)]
    Schedule.objects.filter(pk=schedule.pk).update(
        start_at=start, end_at=due[-1], next_fire_at=start
    )
    runs = Run.objects.filter(schedule=schedule)
    wait_until(
        lambda: (
            Schedule.objects.get(pk=schedule.pk).next_fire_at is None
            and not runs.filter(status__in=ACTIVE_STATUSES).exists()
        ),
        timeout=seconds + 60,
        interval=0.5,
        message=lambda: f"the schedule's end and its last run; worker output:\n{worker.output}",
    )
    worker.signal()
    assert worker.wait(30) == 0, worker.output

    schedule.refresh_from_db()
    fired = list(runs.order_by("scheduled_for"))
    skipped = [moment for name, moment in skipped_in(worker.lines) if name == "overlapping"]
    # Each due second went one way, once: a run, or one skip line.
    assert sorted([run.scheduled_for for run in fired] + skipped) == due, worker.output
    assert (schedule.fire_count, schedule.skip_count) == (len(fired), len(skipped))
    assert all(run.status == RunStatus.SUCCESSFUL for run in fired)
    # Never two at once: each run started once the one before had finished.
    for before, after in pairwise(fired):
        assert after.started_at >= before.finished_at, (before.pk, after.pk)
        assert after.scheduled_for - before.scheduled_for >= timedelta(seconds=3)
    # A skip only while a run fired earlier was unfinished (its end written at most a
    # moment before the skip's count read it).
    for moment in skipped:
        assert any(
            run.scheduled_for < moment < run.finished_at + timedelta(seconds=0.5) for run in fired
        ), moment
    share = len(fired) / seconds
    print(f"fired {len(fired)} of {seconds} due seconds ({share:.0%})")
    assert 0.15 <= share <= 0.45, [run.scheduled_for for run in fired]


def test_four_schedulers_never_pass_the_same_count(start_scheduler):
    """No worker: runs stay READY, so each schedule holds exactly max_instances runs, the
    oldest fire times, whoever fired them; every other due time is skipped once."""
    processes = [start_scheduler("--no-sync", "--max-sleep", "0.5") for _ in range(4)]
    for process in processes:
        process.wait_for_output("Scheduler started")
    seconds = 8
    start = (timezone.now() + timedelta(seconds=2)).replace(microsecond=0)
    due = [start + timedelta(seconds=k) for k in range(seconds)]
    limits = {f"limited-{index:02d}": 1 + index % 2 for index in range(20)}
    Schedule.objects.bulk_create(
        [
            Schedule(
                name=name,
                task_path=TASK,
                kind="cron",
                cron="* * * * * *",
                timezone="UTC",
                max_instances=limit,
                end_at=due[-1],
                misfire_policy="catch_up",
                misfire_grace=timedelta(minutes=5),
                next_fire_at=start,
            )
            for name, limit in limits.items()
        ]
    )
    run_to_the_end(processes, seconds)

    skips = skipped_in([line for process in processes for line in process.lines])
    for schedule in Schedule.objects.all():
        limit = limits[schedule.name]
        fired = list(
            Run.objects.filter(schedule=schedule)
            .order_by("scheduled_for")
            .values_list("scheduled_for", flat=True)
        )
        assert fired == due[:limit], schedule.name
        assert (schedule.fire_count, schedule.skip_count) == (limit, seconds - limit)
        # Logged once: by the scheduler whose compare-and-set consumed the time.
        logged = sorted(moment for name, moment in skips if name == schedule.name)
        assert logged == due[limit:], schedule.name
