"""Worker middleware (TASKMILL_MIDDLEWARE), with real workers: the factories wrap every
attempt in the order listed, sync tasks on a thread or in a child process and async tasks on
the event loop alike, with the run's id, attempt, queue, task and metadata at hand; what a
task raises reaches them; a middleware may change the result; one that cannot serve async
tasks stops the worker at start; a path that is not a factory is a system check's error."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from taskmill.models import Run, RunStatus
from tests.conftest import read_records
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

ORDERED = "tests.testapp.middleware.outer,tests.testapp.middleware.inner"


def wrapped(record_dir) -> dict[str, list[list[str]]]:
    """Per run id, the middleware lines recorded around its attempts, split in fields."""
    seen: dict[str, list[list[str]]] = defaultdict(list)
    for line in read_records(record_dir):
        if line.startswith("mw "):
            fields = line.split()
            seen[fields[3]].append(fields[1:3] + fields[4:])
    return seen


def test_middleware_wraps_every_attempt_in_order_sync_async_and_in_a_child(run_worker, record_dir):
    on_thread = tasks.add.using(metadata={"tenant": "acme"}).enqueue(1, 2)
    in_child = tasks.add.using(timeout=20, queue_name="low").enqueue(3, 4)
    on_loop = tasks.async_add.enqueue(5, 6)
    failing = tasks.fail.enqueue("on purpose")
    run_worker(
        "--burst", "--no-scheduler", "--queue", "default", "--queue", "low",
        env={"TASKMILL_TEST_MIDDLEWARE": ORDERED},
    )  # fmt: skip

    seen = wrapped(record_dir)
    order = [["outer", "before"], ["inner", "before"], ["inner", "after"], ["outer", "after"]]
    for result, queue, task, tenant in (
        (on_thread, "default", "add", "acme"),
        (in_child, "low", "add", "-"),
        (on_loop, "default", "async_add", "-"),
    ):
        lines = seen[result.id]
        assert [line[:2] for line in lines] == order, (task, lines)
        # Attempt 1, the run's queue, its task, its metadata: the same in every line.
        assert {tuple(line[2:]) for line in lines} == {("1", queue, task, tenant)}
    assert [line[:2] for line in seen[failing.id]] == [
        ["outer", "before"],
        ["inner", "before"],
        ["inner", "raised:ValueError"],
        ["outer", "raised:ValueError"],
    ]
    statuses = dict(Run.objects.values_list("id", "status"))
    assert statuses[int(on_thread.id)] == statuses[int(on_loop.id)] == RunStatus.SUCCESSFUL
    assert statuses[int(failing.id)] == RunStatus.FAILED
    assert Run.objects.get(pk=int(on_thread.id)).return_value == 3


def test_a_middleware_may_change_the_result(run_worker):
    sync_result, async_result = tasks.add.enqueue(20, 1), tasks.async_add.enqueue(10, 1)
    run_worker(
        "--burst", "--no-scheduler",
        env={"TASKMILL_TEST_MIDDLEWARE": "tests.testapp.middleware.doubling"},
    )  # fmt: skip
    values = dict(Run.objects.values_list("id", "return_value"))
    assert (values[int(sync_result.id)], values[int(async_result.id)]) == (42, 22)


def test_a_middleware_that_cannot_serve_async_tasks_stops_the_worker_at_start(run_worker):
    result = tasks.add.enqueue(1, 1)
    worker = run_worker(
        "--burst", "--no-scheduler",
        env={"TASKMILL_TEST_MIDDLEWARE": "tests.testapp.middleware.sync_only"},
        expect_code=None,
    )  # fmt: skip
    assert worker.process.returncode != 0
    assert "returned a sync callable for an async task" in worker.output
    assert "is an async task)" in worker.output
    assert Run.objects.get(pk=int(result.id)).status == RunStatus.READY  # nothing claimed


def test_a_path_that_is_no_factory_is_a_system_check_error():
    with override_settings(TASKMILL_MIDDLEWARE=["tests.testapp.middleware.nope"]):
        errors = [e for e in run_checks() if e.id == "taskmill.E008"]
    assert len(errors) == 1 and "cannot be imported" in errors[0].msg
    with override_settings(TASKMILL_MIDDLEWARE="tests.testapp.middleware.outer"):
        errors = [e for e in run_checks() if e.id == "taskmill.E008"]
    assert len(errors) == 1 and "must be a list" in errors[0].msg
    with override_settings(TASKMILL_MIDDLEWARE=[ORDERED.split(",")[0]]):
        assert [e for e in run_checks() if e.id == "taskmill.E008"] == []
