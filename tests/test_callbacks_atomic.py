"""Callbacks (on_success / on_failure, enqueued with the outcome), atomic tasks (body and
success in one transaction), result_ttl; and the errors invalid options give."""

from __future__ import annotations

import datetime as dt

import pytest

import taskmill
from taskmill.compat import DECORATOR_TAKES_OPTIONS, InvalidTask, TaskResultStatus
from taskmill.models import Run, RunDependency, RunStatus
from taskmill.tasks import Task
from tests.conftest import read_records
from tests.testapp import tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)
# Tests that run no worker: rolled back at the end, much cheaper than a flush.
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

ON_SUCCESS = "tests.testapp.tasks.note_success"
ON_FAILURE = "tests.testapp.tasks.note_failure"


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


def callbacks(path: str) -> list[tuple[list, str]]:
    return sorted(
        (run.args, run.status) for run in Run.objects.filter(task_path=path).order_by("id")
    )


def step_started(record_dir, name: str) -> dt.datetime:
    """When the step task ``name`` started, as it recorded it."""
    (line,) = [line for line in read_records(record_dir) if line.startswith(f"step-{name} ")]
    return dt.datetime.fromisoformat(line.split()[3])


def test_callbacks_atomic_tasks_and_expiry_in_a_worker(run_worker, record_dir):
    # Callbacks: once, with the finished run's id; never for a retry.
    at_once = tasks.watched.enqueue(0)  # succeeds on attempt 1
    after_retry = tasks.watched.enqueue(1)  # fails once (a retry), then succeeds
    given_up = tasks.watched.enqueue(5)  # fails both of its two attempts
    # Atomic tasks: the body's rows exist once if it succeeded, not at all if it failed.
    committed = tasks.atomic_insert.enqueue("committed")
    rolled_back = tasks.atomic_insert.enqueue("rolled-back", fail=True)
    kept = tasks.plain_insert.enqueue("kept", fail=True)  # not atomic: the row stays
    retried = tasks.atomic_flaky.enqueue("retried")  # attempt 1 inserts, then fails
    after_atomic = tasks.step.using(depends_on=[committed]).enqueue("after-atomic")
    # result_ttl: a finished run may be pruned that long after it finished.
    ttl = tasks.short_lived.enqueue()
    ttl_per_call = tasks.short_lived.using(result_ttl=dt.timedelta(hours=2)).enqueue()
    no_ttl = tasks.add.enqueue(1, 1)
    assert row(ttl_per_call).options == {"result_ttl": 7200.0}

    run_worker("--burst", "--no-scheduler")

    assert (row(at_once).status, row(at_once).attempt) == (RunStatus.SUCCESSFUL, 1)
    assert (row(after_retry).status, row(after_retry).attempt) == (RunStatus.SUCCESSFUL, 2)
    assert (row(given_up).status, row(given_up).attempt) == (RunStatus.FAILED, 2)
    # One note_success per success (the atomic task's, written by its own transaction,
    # included), one note_failure for the final failure, none for the retries; each ran.
    assert callbacks(ON_SUCCESS) == sorted(
        [
            ([at_once.id], "SUCCESSFUL"),
            ([after_retry.id], "SUCCESSFUL"),
            ([committed.id], "SUCCESSFUL"),
        ]
    )
    assert callbacks(ON_FAILURE) == [([given_up.id], "SUCCESSFUL")]
    records = read_records(record_dir)
    assert sorted(line for line in records if line.startswith("on_")) == sorted(
        [
            f"on_success {at_once.id}",
            f"on_success {after_retry.id}",
            f"on_success {committed.id}",
            f"on_failure {given_up.id}",
        ]
    )
    # A callback is enqueued with the outcome, not before: never ahead of the run's finish.
    for result, path in [(at_once, ON_SUCCESS), (given_up, ON_FAILURE)]:
        callback = Run.objects.get(task_path=path, args=[result.id])
        assert callback.enqueued_at >= row(result).finished_at

    assert row(committed).status == RunStatus.SUCCESSFUL
    effect = Effect.objects.get(name="committed")
    assert row(committed).return_value == effect.pk
    assert row(rolled_back).status == RunStatus.FAILED
    assert "failed after inserting rolled-back" in row(rolled_back).errors[0]["traceback"]
    assert not Effect.objects.filter(name="rolled-back").exists()
    assert row(kept).status == RunStatus.FAILED and Effect.objects.filter(name="kept").exists()
    assert (row(retried).status, row(retried).attempt) == (RunStatus.SUCCESSFUL, 2)
    assert sorted(
        Effect.objects.filter(name__startswith="retried").values_list("name", flat=True)
    ) == ["retried-2"]
    assert Effect.objects.count() == 3  # committed, kept, retried-2
    # An atomic task's success releases its dependents too.
    assert row(after_atomic).status == RunStatus.SUCCESSFUL
    assert step_started(record_dir, "after-atomic") >= row(committed).finished_at

    run = row(ttl)
    assert run.expires_at == run.finished_at + dt.timedelta(seconds=60)
    run = row(ttl_per_call)
    assert run.expires_at == run.finished_at + dt.timedelta(hours=2)
    assert row(no_ttl).expires_at is None  # TASKMILL_RESULT_TTL is None: kept


@IN_A_TRANSACTION
def test_statuses_as_djangos_api_sees_them():
    later = tasks.add.using(run_after=dt.timedelta(hours=1)).enqueue(1, 1)
    waiting = tasks.step.using(depends_on=[later]).enqueue("w")
    assert row(waiting).status == RunStatus.WAITING
    fetched = tasks.step.get_result(waiting.id)
    assert fetched.status == TaskResultStatus.READY and not fetched.is_finished
    Run.objects.filter(pk=int(waiting.id)).update(status=RunStatus.CANCELLED)
    fetched.refresh()
    assert fetched.status == TaskResultStatus.FAILED
    for status in (RunStatus.READY, RunStatus.RUNNING, RunStatus.SUCCESSFUL, RunStatus.FAILED):
        Run.objects.filter(pk=int(later.id)).update(status=status)
        later.refresh()
        assert later.status == status


# -- invalid options ---------------------------------------------------------------------------


def plain(x: int = 0) -> int:
    return x


async def async_plain() -> None:
    return None


@IN_A_TRANSACTION
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, r"max_attempts must be an integer >= 1, not 0"),
        ({"max_attempts": 2.5}, r"max_attempts must be an integer >= 1, not 2\.5"),
        ({"max_attempts": True}, r"max_attempts must be an integer >= 1, not True"),
        ({"retry_on": "x"}, r"retry_on must hold exception classes, not 'x'"),
        (
            {"retry_on": (ValueError, int)},
            r"retry_on must hold exception classes, not <class 'int'>",
        ),
        ({"backoff": 5}, r"backoff must be a callable"),
        ({"backoff_base": 0}, r"backoff_base must be a positive number of seconds, not 0"),
        ({"backoff_cap": -1}, r"backoff_cap must be a positive number of seconds, not -1"),
        ({"timeout": -1}, r"timeout must be a positive number of seconds, not -1"),
        ({"timeout": "5"}, r"timeout must be a positive number of seconds, not '5'"),
        ({"result_ttl": -1}, r"result_ttl must be seconds >= 0 or a timedelta, not -1"),
        ({"on_success": 42}, r"on_success must be a task or its import path, not 42"),
        ({"on_failure": "nodots"}, r"on_failure must be a task or its import path"),
    ],
)
def test_invalid_task_options_are_refused_clearly(options, message):
    with pytest.raises(InvalidTask, match=message):
        taskmill.task(**options)(plain)


@IN_A_TRANSACTION
@pytest.mark.skipif(
    not DECORATOR_TAKES_OPTIONS, reason="only Django 6.1's task() passes options to backends"
)
def test_djangos_own_decorator_makes_the_same_task():
    from django.tasks import task as django_task

    made = django_task(max_attempts=3, retry_on=KeyError, unique=True, priority=5)(plain)
    assert isinstance(made, Task)
    assert (made.max_attempts, made.retry_on, made.unique, made.priority) == (
        3,
        (KeyError,),
        True,
        5,
    )
    with pytest.raises(InvalidTask, match="max_attempts must be an integer >= 1, not 0"):
        django_task(max_attempts=0)(plain)


@IN_A_TRANSACTION
def test_atomic_is_refused_on_an_async_task():
    # The worker runs only sync bodies inside the run's transaction; an async "atomic" task
    # would silently not be atomic.
    with pytest.raises(InvalidTask, match="atomic=True needs a sync task"):
        taskmill.task(atomic=True)(async_plain)
    assert taskmill.task(atomic=False)(async_plain).atomic is False


@IN_A_TRANSACTION
def test_invalid_per_call_options_are_refused_clearly():
    count = Run.objects.count()
    with pytest.raises(InvalidTask, match="max_attempts must be an integer >= 1, not 0"):
        tasks.flaky.using(max_attempts=0)
    with pytest.raises(InvalidTask, match="timeout must be a positive number of seconds"):
        tasks.flaky.using(timeout=-1)
    with pytest.raises(InvalidTask, match="result_ttl must be seconds >= 0"):
        tasks.flaky.using(result_ttl=dt.timedelta(seconds=-5))
    with pytest.raises(InvalidTask, match="unique_key is longer than 200 characters"):
        tasks.unique_job.using(unique_key="k" * 201)
    with pytest.raises(InvalidTask, match="unique_key must be a non-empty string"):
        tasks.unique_job.using(unique_key="")
    with pytest.raises(TypeError, match=r"unexpected option\(s\) bogus; per call, taskmill takes"):
        tasks.flaky.using(bogus=1)
    with pytest.raises(TypeError, match="unexpected option"):
        tasks.flaky.using(retry_on=(ValueError,))  # the task's, not per call
    with pytest.raises(TypeError, match="run_after is set per call"):
        taskmill.task(run_after=dt.timedelta(seconds=1))(plain)
    assert Run.objects.count() == count and RunDependency.objects.count() == 0
    # The longest key allowed does work.
    assert tasks.unique_job.using(unique_key="k" * 200).enqueue("x").id
    # Valid options are normalised: one class to a tuple, durations to float seconds.
    made = taskmill.task(retry_on=KeyError, timeout=dt.timedelta(seconds=3), result_ttl=5)(plain)
    assert made.retry_on == (KeyError,) and made.timeout == 3.0 and made.result_ttl == 5.0


def test_a_stale_outcome_in_the_same_batch_enqueues_no_second_callback():
    # Found by the long chaos soak (PostgreSQL, seed 202): a frozen worker's attempt 1 was
    # rescued; thawed, the worker claimed the run back as attempt 2, which failed, and wrote
    # both outcomes in one batch. Only attempt 2's write landed, but the landed row was found
    # by run id alone, so each outcome enqueued the on_failure callback: two callback runs.
    from django.utils import timezone

    from taskmill import registry
    from taskmill.db import get_engine
    from taskmill.worker.attempt import Attempt
    from taskmill.worker.outcomes import write_outcomes

    result = tasks.step_with_callback.enqueue("once")
    engine = get_engine("default")

    def claim():
        now = timezone.now()
        lease = now + dt.timedelta(minutes=1)
        (run,) = engine.claim(worker_id="w", limit=1, now=now, lease_until=lease, queues=None)
        return run

    stale = claim()
    Run.objects.filter(pk=stale.id).update(status="READY")  # rescued while "w" was frozen
    newer = claim()
    assert newer.attempt == stale.attempt + 1
    completed = []
    for run in (stale, newer):
        attempt = Attempt(run, database="default")
        attempt.task = registry.resolve(run.task_path)
        completed.append(attempt.failed(ValueError(f"attempt {run.attempt}"), 0.0))

    landed = write_outcomes(engine, "default", completed)

    assert set(landed) == {(newer.id, newer.attempt)}
    assert row(result).status == TaskResultStatus.FAILED
    assert callbacks(ON_FAILURE) == [([result.id], "READY")]
