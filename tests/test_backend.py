"""The django.tasks contract: enqueue, results, validation, signals, checks."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core import checks
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from taskmill.backend import DatabaseBackend
from taskmill.compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
)
from taskmill.exceptions import InvalidTaskArguments, TaskNotRegistered
from taskmill.models import Run
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_backend_declares_every_feature():
    backend = task_backends["default"]
    assert isinstance(backend, DatabaseBackend)
    assert backend.supports_defer
    assert backend.supports_async_task
    assert backend.supports_get_result
    assert backend.supports_priority
    assert tasks.add.__class__ is backend.task_class


def test_enqueue_stores_a_ready_run():
    before = timezone.now()
    result = tasks.add.enqueue(2, b=3)
    run = Run.objects.get(pk=int(result.id))
    assert run.task_path == "tests.testapp.tasks.add"
    assert run.args == [2] and run.kwargs == {"b": 3}
    assert run.status == TaskResultStatus.READY
    assert run.queue_name == "default" and run.priority == 0
    assert run.backend == "default"
    assert before <= run.enqueued_at <= timezone.now()
    assert run.available_at == run.enqueued_at
    assert run.run_after is None
    assert run.attempt == 0 and run.worker_ids == [] and run.errors == []

    assert result.status == TaskResultStatus.READY
    assert result.enqueued_at == run.enqueued_at
    assert result.started_at is None and result.finished_at is None
    assert result.last_attempted_at is None
    assert result.args == [2] and result.kwargs == {"b": 3}
    assert result.errors == [] and result.worker_ids == []
    assert result.task.func is tasks.add.func
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_enqueued_runs_hold_the_model_defaults_in_the_columns_they_leave_out():
    # A lone run is a plain INSERT naming only the columns whose values the database would
    # not write itself; a batch leaves out the columns at such a value in every run. Both
    # must store what the ORM's defaults say, deferred (no wake-up) or not.
    later = timezone.now() + dt.timedelta(hours=1)
    results = [
        tasks.add.enqueue(1, 2),
        tasks.add.using(run_after=later).enqueue(1, 2),
        *tasks.add.enqueue_many([((3, 4), {}), ((5, 6), {})]),
    ]
    defaults = Run()
    set_by_the_enqueue = {"id", "args", "kwargs", "task_path", "enqueued_at", "available_at"}
    set_by_the_enqueue |= {"backend", "queue_name", "run_after", "due", "active_unique_key"}
    for result in results:
        run = Run.objects.get(pk=result.id)
        for field in Run._meta.concrete_fields:
            if field.attname not in set_by_the_enqueue:
                expected = getattr(defaults, field.attname)
                assert getattr(run, field.attname) == expected, (result.id, field.attname)
    deferred = Run.objects.get(pk=results[1].id)
    assert deferred.run_after == later == deferred.available_at and deferred.due is False


def test_new_run_refuses_further_fields_that_the_task_and_call_set():
    backend = task_backends["default"]
    with pytest.raises(TypeError, match="sets priority, status itself"):
        backend.new_run(tasks.add, [1, 2], {}, now=timezone.now(), status="RUNNING", priority=9)


def test_result_ids_are_unique_strings_in_enqueue_order():
    ids = [tasks.noop.enqueue().id for _ in range(5)]
    assert all(isinstance(result_id, str) for result_id in ids)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert len(set(ids)) == 5


def test_using_sets_queue_priority_and_run_after():
    when = timezone.now() + dt.timedelta(hours=1)
    result = tasks.add.using(queue_name="high", priority=50, run_after=when).enqueue(1, 1)
    run = Run.objects.get(pk=int(result.id))
    assert (run.queue_name, run.priority, run.run_after, run.available_at) == (
        "high",
        50,
        when,
        when,
    )
    assert result.task.queue_name == "high" and result.task.priority == 50


def test_run_after_accepts_a_timedelta():
    before = timezone.now()
    result = tasks.add.using(run_after=dt.timedelta(minutes=10)).enqueue(1, 2)
    run = Run.objects.get(pk=int(result.id))
    assert run.run_after == run.enqueued_at + dt.timedelta(minutes=10)
    assert run.run_after >= before + dt.timedelta(minutes=10)
    assert result.task.run_after == run.run_after


def test_a_timedelta_task_resolves_at_each_enqueue():
    later = tasks.noop.using(run_after=dt.timedelta(seconds=30))
    first = Run.objects.get(pk=int(later.enqueue().id))
    second = Run.objects.get(pk=int(later.enqueue().id))
    assert first.run_after - first.enqueued_at == dt.timedelta(seconds=30)
    assert second.run_after - second.enqueued_at == dt.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"queue_name": "nope"}, "Queue 'nope' is not valid"),
        ({"priority": 101}, "priority must be a whole number"),
        ({"priority": -101}, "priority must be a whole number"),
        ({"run_after": dt.datetime(2030, 1, 1)}, "aware datetime"),
        ({"run_after": "tomorrow"}, "aware datetime or a timedelta"),
    ],
)
def test_invalid_task_options_are_rejected(changes, message):
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**changes).enqueue(1, 2)
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((object(),), {}, r"args\[0\] is a builtins.object"),
        ((), {"when": dt.datetime(2030, 1, 1, tzinfo=dt.UTC)}, r"kwargs\['when'\] is a datetime"),
        (([1, {"x": Decimal("1.5")}],), {}, r"args\[0\]\[1\]\['x'\] is a decimal.Decimal"),
        ((float("nan"),), {}, "JSON cannot represent"),
        (({1: "a"},), {}, "keys must be strings"),
    ],
)
def test_non_json_arguments_raise_a_clear_error_and_store_nothing(args, kwargs, message):
    with pytest.raises(InvalidTaskArguments, match=message) as caught:
        tasks.add.enqueue(*args, **kwargs)
    assert "tests.testapp.tasks.add" in str(caught.value)
    assert "JSON" in str(caught.value)
    assert isinstance(caught.value, TypeError)  # what Django's own backends raise
    assert not Run.objects.exists()


def test_tuples_are_stored_as_lists():
    result = tasks.noop.enqueue((1, 2), nested={"a": (3,)})
    run = Run.objects.get(pk=int(result.id))
    assert run.args == [[1, 2]] and run.kwargs == {"nested": {"a": [3]}}


def test_get_result_round_trip():
    result = tasks.add.using(priority=7).enqueue(4, 5)
    fetched = tasks.add.get_result(result.id)
    assert fetched.id == result.id
    assert fetched.status == TaskResultStatus.READY
    assert fetched.args == [4, 5]
    assert fetched.task.priority == 7
    assert fetched.enqueued_at == result.enqueued_at
    assert task_backends["default"].get_result(result.id).id == result.id


@pytest.mark.parametrize("missing", ["999999", "not-a-number", ""])
def test_get_result_of_unknown_id(missing):
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(missing)


def test_get_result_of_another_task_is_a_mismatch():
    from taskmill.compat import TASKS_FRAMEWORK

    exceptions = __import__(f"{TASKS_FRAMEWORK}.exceptions", fromlist=["TaskResultMismatch"])
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(exceptions.TaskResultMismatch):
        tasks.noop.get_result(result.id)


def test_get_result_of_an_unregistered_task_path_is_a_clear_error():
    result = tasks.add.enqueue(1, 2)
    Run.objects.filter(pk=int(result.id)).update(task_path="os.system")
    # The run is still a result (tests/test_django_contract.py); its task is the clear error.
    fetched = task_backends["default"].get_result(result.id)
    with pytest.raises(TaskNotRegistered, match=r"'os\.system' is not registered"):
        _ = fetched.task.func


def test_task_enqueued_signal_is_sent_after_the_insert():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id, Run.objects.filter(pk=int(task_result.id)).exists()))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(DatabaseBackend, result.id, True)]


def test_bulk_enqueue_inserts_every_call():
    calls = [((i, i), {}) for i in range(250)]
    results = tasks.add.enqueue_many(calls)
    assert len(results) == 250
    runs = {run.pk: run for run in Run.objects.all()}
    assert len(runs) == 250
    for i, result in enumerate(results):
        assert runs[int(result.id)].args == [i, i]
        assert result.status == TaskResultStatus.READY
    ids = [int(result.id) for result in results]
    assert ids == sorted(ids), "bulk enqueue keeps the order of the calls"


def test_bulk_enqueue_larger_than_one_statement():
    # SQLite takes about 1,100 runs per INSERT (its parameter limit), MariaDB 1,000, so
    # 2,600 runs are three statements there; the ids, values and times must all line up.
    later = timezone.now() + dt.timedelta(hours=1)
    results = tasks.add.using(run_after=later).enqueue_many([((i, 1), {}) for i in range(2600)])
    ids = [int(result.id) for result in results]
    assert ids == sorted(ids) and len(set(ids)) == 2600
    stored = Run.objects.in_bulk(ids)
    assert [stored[run_id].args for run_id in ids] == [[i, 1] for i in range(2600)]
    first = stored[ids[0]]
    assert first.run_after == later == results[0].task.run_after
    assert first.enqueued_at == results[0].enqueued_at
    assert first.available_at == later and first.due is False
    assert {run.status for run in stored.values()} == {"READY"}


def test_bulk_enqueue_rejects_the_whole_batch_on_a_bad_argument():
    with pytest.raises(InvalidTaskArguments, match=r"args\[0\]"):
        tasks.add.enqueue_many([((1, 2), {}), ((object(), 2), {})])
    assert not Run.objects.exists()


def test_bulk_enqueue_sends_one_signal_per_run():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        results = tasks.noop.enqueue_many([((), {})] * 3)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [result.id for result in results]


def test_module_level_enqueue_many():
    import taskmill

    assert len(taskmill.enqueue_many(tasks.noop, [((), {}), ((), {})])) == 2
    assert tasks.noop.enqueue_many([]) == []


@pytest.mark.django_db(transaction=True)
def test_async_enqueue_and_get_result():
    async def scenario():
        result = await tasks.async_add.aenqueue(1, 2)
        fetched = await tasks.async_add.aget_result(result.id)
        # The sync_to_async thread opened its own connection: close it before teardown.
        await sync_to_async(connections.close_all)()
        return result, fetched

    result, fetched = asyncio.run(scenario())
    assert fetched.id == result.id
    assert fetched.status == TaskResultStatus.READY
    assert Run.objects.get(pk=int(result.id)).task_path == "tests.testapp.tasks.async_add"


def test_system_checks_pass_on_the_test_settings():
    from django.db import connection

    messages = task_backends["default"].check(databases=[connection.alias])
    assert [m for m in messages if m.level >= checks.WARNING] == []


def test_system_checks_report_configuration_mistakes():
    with override_settings(
        TASKS={
            "default": {
                "BACKEND": "taskmill.backend.DatabaseBackend",
                "QUEUES": ["default", "q" * 65],
                "OPTIONS": {"DATABSE": "other"},
            },
            "missing_db": {
                "BACKEND": "taskmill.backend.DatabaseBackend",
                "OPTIONS": {"DATABASE": "nowhere"},
            },
        }
    ):
        ids = {m.id for m in task_backends["default"].check()}
        ids |= {m.id for m in task_backends["missing_db"].check()}
    assert {"taskmill.W001", "taskmill.E003", "taskmill.E002"} <= ids


def test_check_framework_runs_backend_checks():
    # The test's database only: Django's model checks ask every database they are given
    # for its version (the PgBouncer suite has a second alias, PostgreSQL itself).
    messages = checks.run_checks(tags=None, databases=["default"])
    assert not [m for m in messages if m.id and m.id.startswith("taskmill.")]
