"""A worker takes only the runs of its ``TASKS`` alias, though several share a database.

Django records the alias a run was enqueued through (``TaskResult.backend``). Two aliases
on one database may name the same queue ("default" in tests/settings.py): a worker started
with ``--backend default`` must leave the "reports" alias's runs to that alias's workers.
"""

from __future__ import annotations

import pytest

from taskmill.compat import TaskResultStatus
from taskmill.models import Run
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def enqueue_on_both() -> tuple:
    ours = tasks.add.enqueue(1, 1)
    theirs = tasks.add.using(backend="reports").enqueue(2, 2)
    assert (ours.backend, theirs.backend) == ("default", "reports")
    assert ours.task.queue_name == theirs.task.queue_name == "default"
    return ours, theirs


def test_a_worker_runs_only_the_runs_of_its_alias(run_worker):
    ours, theirs = enqueue_on_both()
    run_worker("--burst", "--no-scheduler")  # the default alias
    ours.refresh()
    assert ours.status == TaskResultStatus.SUCCESSFUL
    assert Run.objects.get(pk=int(theirs.id)).status == "READY"
    assert Run.objects.get(pk=int(theirs.id)).attempt == 0  # never even claimed
    worker = run_worker("--backend", "reports", "--burst", "--no-scheduler")
    theirs.refresh()
    assert theirs.status == TaskResultStatus.SUCCESSFUL, worker.output
    assert theirs.return_value == 4


def test_all_backends_takes_the_runs_of_every_alias_of_the_database(run_worker):
    ours, theirs = enqueue_on_both()
    run_worker("--all-backends", "--burst", "--no-scheduler")
    for result in (ours, theirs):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL


def test_a_supervised_worker_passes_all_backends_on_to_its_processes(run_worker):
    ours, theirs = enqueue_on_both()
    run_worker("--all-backends", "--processes", "2", "--burst", "--no-scheduler")
    for result in (ours, theirs):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
