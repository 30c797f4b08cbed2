"""What a real scheduler process says about each fire, at each verbosity."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from taskmill.models import Run, Schedule
from tests.conftest import only_on, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    only_on("mysql", "what a scheduler logs does not depend on the database"),
]

FIRED = re.compile(r"Schedule 'declared-every-second' fired for (\S+): run (\d+)$")


def test_at_verbosity_2_each_fire_is_one_line_naming_its_time_and_run(start_scheduler):
    scheduler = start_scheduler("--max-sleep", "0.5", "-v", "2")
    wait_until(
        lambda: sum(bool(FIRED.search(line)) for line in scheduler.lines) >= 2,
        timeout=30,
        message=lambda: f"two fire lines in:\n{scheduler.output}",
    )
    scheduler.signal()
    assert scheduler.wait(30) == 0, scheduler.output
    fires = [match.groups() for line in scheduler.lines if (match := FIRED.search(line))]
    declared = Schedule.objects.get(name="declared-every-second")
    runs = dict(Run.objects.filter(schedule=declared).values_list("pk", "scheduled_for"))
    # One line per run enqueued, each naming that run and the time it fired for.
    assert len(fires) == len(runs), scheduler.output
    for fire_time, run_id in fires:
        assert runs[int(run_id)] == datetime.fromisoformat(fire_time)


def test_at_the_default_verbosity_fires_are_not_logged(start_scheduler):
    scheduler = start_scheduler("--max-sleep", "0.5")
    declared = wait_until(
        lambda: Schedule.objects.filter(name="declared-every-second").first(), timeout=30
    )
    wait_until(lambda: Run.objects.filter(schedule=declared).count() >= 2, timeout=30)
    scheduler.signal()
    assert scheduler.wait(30) == 0, scheduler.output
    assert not any(FIRED.search(line) for line in scheduler.lines), scheduler.output
