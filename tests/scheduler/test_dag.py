"""Dependencies between schedules: when a dependent fires, and cycles refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from taskmill.models import Run, Schedule
from taskmill.scheduler import firing

from .conftest import fire_times, make_schedule

pytestmark = pytest.mark.django_db

T0 = datetime(2027, 6, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def finish(schedule: Schedule, status: str, at: datetime) -> None:
    Run.objects.filter(schedule=schedule).update(status=status, finished_at=at)


def test_a_dependent_fires_only_after_each_dependency_succeeded_since_its_last_fire():
    extract = make_schedule(T0, name="extract", kind="cron", cron="0 * * * *")
    load = make_schedule(T0, name="load", kind="cron", cron="0 * * * *")
    report = make_schedule(
        T0, name="report", kind="cron", cron="30 * * * *", misfire_grace=timedelta(hours=2)
    )
    report.depends_on.set([extract, load])

    # First fire is free: nothing has run yet, the report still fires ("future depends").
    firing.tick(now=T0 + HOUR / 2)
    assert fire_times(report) == [T0 + HOUR / 2]

    # 01:00 the dependencies fire; only one of them succeeds before 01:30.
    firing.tick(now=T0 + HOUR)
    finish(extract, "SUCCESSFUL", T0 + HOUR + timedelta(minutes=5))
    finish(load, "FAILED", T0 + HOUR + timedelta(minutes=5))
    firing.tick(now=T0 + HOUR * 1.5)
    assert fire_times(report) == [T0 + HOUR / 2]  # waits: load has not succeeded
    report.refresh_from_db()
    assert report.next_fire_at == T0 + HOUR * 1.5
    assert report.blocked_until is not None

    # load succeeds (a retry, say) at 01:40: the waiting 01:30 fire goes out, late.
    finish(load, "SUCCESSFUL", T0 + HOUR + timedelta(minutes=40))
    now = T0 + HOUR + timedelta(minutes=41)
    firing.tick(now=now)
    assert fire_times(report) == [T0 + HOUR / 2, T0 + HOUR * 1.5]

    # Those successes were consumed: at 02:30 nothing new has succeeded, so it waits again.
    firing.tick(now=T0 + HOUR * 2.5)
    assert len(fire_times(report)) == 2


def test_a_dependency_cycle_is_rejected_whoever_adds_the_edge():
    a = make_schedule(T0, name="a", kind="cron", cron="0 * * * *")
    b = make_schedule(T0, name="b", kind="cron", cron="0 * * * *")
    c = make_schedule(T0, name="c", kind="cron", cron="0 * * * *")
    b.depends_on.add(a)
    c.depends_on.add(b)
    # (Each in a savepoint: the refusal aborts the transaction it happens in, as errors do.)
    with pytest.raises(ValidationError, match="cycle: a -> c -> b -> a"), transaction.atomic():
        a.depends_on.add(c)
    with pytest.raises(ValidationError, match="cycle"), transaction.atomic():
        c.dependents.add(a)  # the same edge, from the other side
    with pytest.raises(ValidationError, match="cycle: a -> a"), transaction.atomic():
        a.depends_on.add(a)
    assert list(a.depends_on.all()) == []
