"""Pipelines that pass results: ``context.dependency_results`` in the order given, and
``on_dependency_failure="run"`` for a step that runs whatever its dependencies did."""

from __future__ import annotations

import pytest

import taskmill
from taskmill.compat import InvalidTask
from taskmill.models import Run, RunDependency, RunStatus
from tests.testapp import batch_tasks

pytestmark = pytest.mark.django_db(transaction=True)
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def test_values_travel_through_a_three_step_pipeline_in_the_order_given(run_worker):
    a = batch_tasks.step.enqueue("a")
    b = batch_tasks.step.using(depends_on=[a]).enqueue("b")
    c = batch_tasks.step.using(depends_on=[b]).enqueue("c")
    # Named out of id order, and one twice: the order given is kept, the repeat dropped.
    d = batch_tasks.step.using(depends_on=[c, a, b, a]).enqueue("d")
    run_worker("--burst", "--no-scheduler")

    value_a = {"name": "a", "got": []}
    value_b = {"name": "b", "got": [[a.id, value_a]]}
    value_c = {"name": "c", "got": [[b.id, value_b]]}
    assert [row(r).return_value for r in (a, b, c)] == [value_a, value_b, value_c]
    assert row(d).return_value == {
        "name": "d",
        "got": [[c.id, value_c], [a.id, value_a], [b.id, value_b]],
    }
    assert RunDependency.objects.filter(run_id=int(d.id)).count() == 3


def test_on_dependency_failure_run_lets_a_final_step_run_after_a_failure(run_worker):
    bad = batch_tasks.fails.enqueue("broken")
    ok = batch_tasks.step.enqueue("ok")
    final = batch_tasks.step.using(depends_on=[bad, ok], on_dependency_failure="run").enqueue("z")
    cancelled = batch_tasks.step.using(depends_on=[bad, ok]).enqueue("never")
    assert row(final).options == {"on_dependency_failure": "run"}
    assert row(cancelled).options is None  # "cancel", the task's own, is not stored
    run_worker("--burst", "--no-scheduler")

    assert row(bad).status == RunStatus.FAILED
    assert row(final).status == RunStatus.SUCCESSFUL
    # It ran after both ended: the failed one returned nothing, the other its value.
    assert row(final).return_value == {
        "name": "z",
        "got": [[bad.id, None], [ok.id, {"name": "ok", "got": []}]],
    }
    assert row(cancelled).status == RunStatus.CANCELLED


def test_an_async_step_reads_its_dependencies_and_its_batch(run_worker):
    with taskmill.batch() as batch:
        first = batch_tasks.step.enqueue("first")
        second = batch_tasks.async_step.using(depends_on=[first]).enqueue("second")
    run_worker("--burst", "--no-scheduler")
    assert row(second).return_value == {
        "name": "second",
        "got": [{"name": "first", "got": []}],
        "batch": batch.pk,
    }


@IN_A_TRANSACTION
def test_on_dependency_failure_takes_two_words_only():
    with pytest.raises(InvalidTask, match='on_dependency_failure must be "cancel"'):
        batch_tasks.step.using(on_dependency_failure="maybe")
    with pytest.raises(InvalidTask, match="not None"):
        batch_tasks.step.using(on_dependency_failure=None)
    assert batch_tasks.step.using(on_dependency_failure="run").on_dependency_failure == "run"
    assert not Run.objects.exists()
