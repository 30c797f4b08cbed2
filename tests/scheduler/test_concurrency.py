"""Any number of schedulers: 4 real scheduler processes, every second, each fire exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from taskmill.compat import TASKS_FRAMEWORK
from taskmill.models import Run, Schedule

from .conftest import TASK, run_to_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCHEDULERS = 4


def test_four_schedulers_fire_every_schedule_time_exactly_once(start_scheduler):
    # The full load once per production engine (the Django 6 leg); SQLite (one writer) and
    # the backport leg, which runs the same fire transaction, get a lighter one so that the
    # test matrix, run in parallel on two cores, stays within its time.
    full = connection.vendor != "sqlite" and TASKS_FRAMEWORK == "django.tasks"
    schedules, seconds = (200, 25) if full else (40, 15)
    start = (timezone.now() + timedelta(seconds=4)).replace(microsecond=0)
    end = start + timedelta(seconds=seconds - 1)
    Schedule.objects.bulk_create(
        [
            Schedule(
                name=f"load-{index:03d}",
                task_path=TASK,
                # Half cron with seconds, half intervals: both kinds, both trigger paths.
                kind="cron" if index % 2 else "interval",
                cron="* * * * * *" if index % 2 else "",
                interval=None if index % 2 else timedelta(seconds=1),
                timezone="UTC",
                end_at=end,
                # Late fires are caught up (never dropped): every time must be enqueued.
                misfire_policy="catch_up",
                misfire_grace=timedelta(minutes=5),
                next_fire_at=start,
            )
            for index in range(schedules)
        ]
    )
    processes = [start_scheduler("--no-sync", "--max-sleep", "0.5") for _ in range(SCHEDULERS)]
    for process in processes:
        process.wait_for_output("Scheduler started")

    run_to_the_end(processes, seconds)

    expected = [start + timedelta(seconds=k) for k in range(seconds)]
    per_schedule = dict(
        Run.objects.values_list("schedule__name")
        .annotate(n=Count("id"))
        .values_list("schedule__name", "n")
    )
    assert per_schedule == {f"load-{index:03d}": seconds for index in range(schedules)}
    for schedule in Schedule.objects.all():
        # fire_count moves only when a compare-and-set wins: equal means nobody won twice.
        assert schedule.fire_count == seconds, schedule.name
    sample = Schedule.objects.get(name="load-007")
    assert (
        list(
            Run.objects.filter(schedule=sample)
            .order_by("scheduled_for")
            .values_list("scheduled_for", flat=True)
        )
        == expected
    )
    # The unique index never had to stop a second insert: the compare-and-set did the job.
    outputs = "\n".join(process.output for process in processes)
    assert "already fired" not in outputs
    assert Run.objects.count() == schedules * seconds
    enqueued_by = [int(p.output.rsplit("after ", 1)[1].split()[0]) for p in processes]
    assert sum(enqueued_by) == schedules * seconds
    print(f"runs enqueued per scheduler: {enqueued_by}")
