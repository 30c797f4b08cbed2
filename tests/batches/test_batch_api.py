"""``taskmill.batch()`` as code meets it: what it refuses (and that a refusal enqueues
nothing), what the block makes members of, the seal, reading a batch back."""

from __future__ import annotations

import pytest

import taskmill
from taskmill.compat import InvalidTask
from taskmill.models import Batch, Run
from tests.testapp import batch_tasks, tasks

from .helpers import callback_runs

pytestmark = pytest.mark.django_db(transaction=False)

CALLBACK = "tests.testapp.batch_tasks.on_finish"


def members(batch: Batch) -> list[int]:
    return list(Run.objects.filter(batch_id=batch.pk).order_by("id").values_list("pk", flat=True))


def test_callbacks_must_be_registered_tasks_in_the_batchs_database():
    with pytest.raises(InvalidTask, match=r"on_finish: Task 'tests\.testapp\.batch_tasks\.nope'"):
        taskmill.batch(on_finish="tests.testapp.batch_tasks.nope")
    with pytest.raises(InvalidTask, match="on_success must be a task or its import path"):
        taskmill.batch(on_success=42)
    with pytest.raises(InvalidTask, match="backend 'nope' is not in TASKS"):
        taskmill.batch(backend="nope")
    with pytest.raises(InvalidTask, match="description"):
        taskmill.batch(description="x" * 300)
    # A task object or its path, the same.
    by_object = taskmill.batch(on_finish=batch_tasks.on_finish, on_failure=CALLBACK)
    assert (by_object.on_finish, by_object.on_failure, by_object.on_success) == (
        CALLBACK,
        CALLBACK,
        "",
    )
    assert by_object.pk is None  # nothing is written before the block
    assert not Batch.objects.exists()


def test_the_runs_enqueued_in_the_block_are_its_members_and_the_seal_counts_them():
    before = tasks.add.enqueue(1, 1)
    with taskmill.batch(description="import 12-07") as batch:
        assert batch.pk is not None and not Batch.objects.get(pk=batch.pk).sealed
        one = tasks.add.enqueue(1, 2)
        many = tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
        with taskmill.batch() as inner:  # an inner batch takes its own block's runs
            nested = tasks.add.enqueue(2, 2)
        last = tasks.add.enqueue(3, 3)
    after = tasks.add.enqueue(4, 4)

    assert members(batch) == [int(r.id) for r in (one, *many, last)]
    assert members(inner) == [int(nested.id)]
    assert Run.objects.get(pk=int(before.id)).batch_id is None
    assert Run.objects.get(pk=int(after.id)).batch_id is None
    assert (batch.sealed, batch.total, batch.pending, batch.finished_at) == (True, 5, 5, None)
    assert str(batch) == "import 12-07" and str(inner) == f"batch {inner.pk}"
    # Read back, by id or by the string a callback gets.
    assert taskmill.get_batch(batch.pk).total == 5
    assert taskmill.get_batch(str(batch.pk)).description == "import 12-07"
    assert taskmill.Batch.objects.get(pk=batch.pk).pending == 5
    with pytest.raises(Batch.DoesNotExist):
        taskmill.get_batch("nope")


def test_a_block_that_raises_still_seals_what_it_enqueued():
    with pytest.raises(ZeroDivisionError), taskmill.batch() as batch:
        tasks.add.enqueue(1, 1)
        1 / 0  # noqa: B018
    batch.refresh()
    assert (batch.sealed, batch.total) == (True, 1)
    assert tasks.add.enqueue(2, 2) is not None  # the block is left: no batch any more
    assert Run.objects.filter(batch_id=batch.pk).count() == 1


def test_an_empty_batch_finishes_at_its_seal():
    with taskmill.batch(on_finish=batch_tasks.on_finish, on_failure=batch_tasks.on_failure) as b:
        pass
    assert b.finished_at is not None and b.total == 0
    runs = callback_runs(b.pk)
    assert [run.pk for run in runs["finish"]] == b.callback_runs
    assert runs["failure"] == []  # nothing failed: on_success's turn, and there is none
    assert runs["finish"][0].batch_id is None  # a callback belongs to no batch


def test_a_member_must_go_through_the_batchs_backend():
    with pytest.raises(InvalidTask, match="backend 'reports', but batch"), taskmill.batch():
        tasks.add.using(backend="reports").enqueue(1, 1)
    assert not Run.objects.exists()


def test_adding_to_a_finished_batch_is_refused_and_enqueues_nothing():
    with taskmill.batch() as batch:
        pass
    assert batch.finished_at is not None
    with pytest.raises(taskmill.BatchFinished, match=f"Batch {batch.pk} finished"):
        batch.add(tasks.add, 1, 1)
    with pytest.raises(taskmill.BatchFinished), batch:
        tasks.add.enqueue(1, 1)
    assert not Run.objects.exists()
    with pytest.raises(InvalidTask, match="add\\(\\) adds to a batch that exists"):
        taskmill.batch().add(tasks.add, 1, 1)


def test_adding_to_a_sealed_batch_counts_the_new_members_only():
    with taskmill.batch() as batch:
        tasks.add.enqueue(1, 1)
    added = batch.add("tests.testapp.tasks.add", 2, 2)  # a path works too
    batch.refresh()
    assert batch.total == 2 and Run.objects.get(pk=int(added.id)).batch_id == batch.pk
    first = batch.add(tasks.unique_job, "same")
    again = batch.add(tasks.unique_job, "same")  # meets the run above: not a new member
    batch.refresh()
    assert again.id == first.id and batch.total == 3
    with batch:  # re-entered: enqueues join, and leaving it seals nothing again
        tasks.add.enqueue(3, 3)
    waiting = batch.add(tasks.add.using(depends_on=[added]), 4, 4)  # a copy with options
    batch.refresh()
    assert (batch.total, batch.sealed, batch.finished_at) == (5, True, None)
    assert Run.objects.filter(batch_id=batch.pk).count() == 5
    assert Run.objects.get(pk=int(waiting.id)).status == "WAITING"
