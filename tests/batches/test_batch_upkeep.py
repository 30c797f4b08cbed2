"""A batch's upkeep: the sweep that repairs a batch stalled by a member deleted by hand, and
pruning (a batch's members are kept until it finishes; the batch goes with the last)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

import taskmill
from taskmill.batches.sweep import STALLED_AFTER, sweep_stalled
from taskmill.models import Batch, Run, RunStatus
from taskmill.pruning import prune_empty_batches, prune_runs
from tests.testapp import batch_tasks, tasks

from .helpers import callback_runs

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sweep_finishes_a_batch_stalled_by_a_vanished_member(run_worker):
    with taskmill.batch(on_finish=batch_tasks.on_finish, on_success=batch_tasks.on_success) as b:
        tasks.add.enqueue_many([((i, 1), {}) for i in range(2)])
        vanished = tasks.add.enqueue(9, 9)
    healthy = taskmill.batch()
    with healthy:
        waiting = tasks.add.using(queue_name="low").enqueue(1, 1)  # no worker serves "low"
    Run.objects.filter(pk=int(vanished.id)).delete()  # by hand, never to end
    run_worker("--burst", "--no-scheduler", "--queue", "default")
    b.refresh()
    assert (b.total, b.succeeded, b.pending, b.finished_at) == (3, 2, 1, None)

    # Too young to be looked at, then looked at: only the stalled one is repaired.
    now = timezone.now()
    assert sweep_stalled("default", now).repaired == []
    later = now + STALLED_AFTER + timedelta(seconds=1)
    result = sweep_stalled("default", later)
    assert result.repaired == [b.pk] and result.looked_at == 2 and result.last_id == 0
    b.refresh()
    assert (b.total, b.succeeded, b.pending) == (2, 2, 0) and b.finished_at == later
    runs = callback_runs(b.pk)
    assert [run.pk for run in runs["finish"] + runs["success"]] == b.callback_runs
    assert len(b.callback_runs) == 2

    # Nothing more to do: the repaired batch has finished, the other still has a member.
    assert sweep_stalled("default", later).repaired == []
    healthy.refresh()
    assert healthy.finished_at is None and healthy.pending == 1
    assert Run.objects.get(pk=int(waiting.id)).status == RunStatus.READY
    # A pass covers a few batches and goes on from the last it saw.
    first = sweep_stalled("default", later, limit=1)
    assert first.looked_at == 1 and first.last_id == healthy.pk
    assert sweep_stalled("default", later, after_id=first.last_id, limit=1).looked_at == 0


def test_members_of_an_open_batch_are_kept_and_a_finished_batch_goes_with_its_last(run_worker):
    # Expiring 30 s after they end: past the test's own prune (a minute ahead), not yet for
    # the worker's pruner duty, which would otherwise take the batch before it is read.
    with taskmill.batch() as open_batch:
        ended = tasks.add.using(result_ttl=30).enqueue(1, 1)
        tasks.add.using(queue_name="low").enqueue(1, 2)  # never runs here: the batch stays open
    with taskmill.batch() as done:
        members = tasks.add.using(result_ttl=30).enqueue_many([((i, 0), {}) for i in range(3)])
    alone = tasks.add.using(result_ttl=30).enqueue(5, 5)
    run_worker("--burst", "--no-scheduler", "--queue", "default")
    done.refresh()
    assert done.finished_at is not None
    assert Run.objects.get(pk=int(ended.id)).status == RunStatus.SUCCESSFUL

    later = timezone.now() + timedelta(minutes=1)
    pruned = prune_runs("default", expired_before=later, batch_size=2)
    assert pruned >= 4  # the finished batch's three, and the run in no batch
    gone = [int(r.id) for r in (*members, alone)]
    assert not Run.objects.filter(pk__in=gone).exists()
    assert not Batch.objects.filter(pk=done.pk).exists()
    # The open batch keeps its ended member (its seal and sweep count members) and itself.
    assert Run.objects.filter(pk=int(ended.id)).exists()
    assert Batch.objects.filter(pk=open_batch.pk).exists()
    prunable = prune_runs("default", expired_before=later, batch_size=10, dry_run=True)
    assert prunable == 0


def test_a_finished_batch_with_no_member_goes_after_a_successful_runs_time_to_live():
    with taskmill.batch(description="enqueued nothing") as empty:
        pass
    with taskmill.batch(description="one member") as full:
        member = tasks.add.enqueue(1, 1)
    unsealed = Batch.objects.create(backend="default", created_at=timezone.now())
    assert empty.finished_at is not None  # an empty batch finishes at its seal
    Batch.objects.filter(pk__in=[empty.pk, full.pk]).update(finished_at=timezone.now())
    in_two_days = timezone.now() + timedelta(days=2)
    # Runs kept for ever (the default): so are batches.
    with override_settings(TASKMILL_RESULT_TTL=None):
        assert prune_empty_batches("default", in_two_days) == 0
    with override_settings(TASKMILL_RESULT_TTL={"SUCCESSFUL": timedelta(days=1)}):
        assert prune_empty_batches("default", timezone.now()) == 0  # not a day old yet
        assert prune_empty_batches("default", in_two_days) == 1
    assert set(Batch.objects.values_list("pk", flat=True)) == {full.pk, unsealed.pk}
    assert Run.objects.filter(pk=int(member.id)).exists()
