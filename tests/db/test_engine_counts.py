"""The contract's counting operations, through the engine directly: ``cumulative_stats`` (the
metrics' counters, kept hours and pruned totals read together) and ``add_to_batch`` (a
batch's members counted as they end)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from taskmill.db import Engine
from taskmill.db.stats import Ended, fold_hours
from taskmill.models import Batch, RunStatsHourly

from .helpers import NOOP

pytestmark = pytest.mark.django_db(transaction=True)


def test_cumulative_stats_add_the_pruned_totals_to_the_kept_hours(engine: Engine) -> None:
    now = timezone.now()
    with transaction.atomic():
        engine.add_stats(
            [
                Ended("default", NOOP, "SUCCESSFUL", now, 0.004, 0.5),
                Ended("default", NOOP, "SUCCESSFUL", now, 2.0, 0.1),
                Ended("emails", NOOP, "FAILED", now, 0.1, 0.1),
            ]
        )
    kept = engine.cumulative_stats()
    assert kept[("default", NOOP, "SUCCESSFUL")]["count"] == 2
    assert kept[("default", NOOP, "SUCCESSFUL")]["duration_sum"] == pytest.approx(2.004)
    assert kept[("emails", NOOP, "FAILED")]["count"] == 1
    # A prune moves the hours to the totals: the sums do not change.
    with transaction.atomic():
        engine.add_totals(fold_hours(RunStatsHourly.objects.all()))
        RunStatsHourly.objects.all().delete()
    assert engine.cumulative_stats() == kept
    # New hours add to the totals.
    with transaction.atomic():
        engine.add_stats([Ended("default", NOOP, "SUCCESSFUL", now + dt.timedelta(hours=1), 1, 1)])
    assert engine.cumulative_stats()[("default", NOOP, "SUCCESSFUL")]["count"] == 3


def test_add_to_batch_counts_members_until_the_batch_finishes(engine: Engine) -> None:
    batch = Batch.objects.create(backend="default", created_at=timezone.now(), total=3)
    with transaction.atomic():
        assert engine.add_to_batch(batch.pk, {"succeeded": 2}) == (False, 1)
    Batch.objects.filter(pk=batch.pk).update(sealed=True)
    with transaction.atomic():
        assert engine.add_to_batch(batch.pk, {"failed": 1, "cancelled": 0}) == (True, 0)
    batch.refresh_from_db()
    assert (batch.succeeded, batch.failed, batch.cancelled) == (2, 1, 0)
    # Finished, or gone: nothing is counted.
    Batch.objects.filter(pk=batch.pk).update(finished_at=timezone.now())
    with transaction.atomic():
        assert engine.add_to_batch(batch.pk, {"succeeded": 1}) is None
        assert engine.add_to_batch(batch.pk + 1000, {"succeeded": 1}) is None
    batch.refresh_from_db()
    assert batch.succeeded == 2


def test_add_to_batch_rolls_back_with_the_callers_transaction(engine: Engine) -> None:
    batch = Batch.objects.create(backend="default", created_at=timezone.now(), total=2)
    with pytest.raises(RuntimeError), transaction.atomic():
        engine.add_to_batch(batch.pk, {"succeeded": 1})
        raise RuntimeError("rolled back")
    batch.refresh_from_db()
    assert batch.succeeded == 0
