"""Django's own proposals, where they name what taskmill has: retries and backoff (#142:
``backoff(exception, task_result)``, the backend's ``MAX_ATTEMPTS`` and ``BACKOFF``) and
``enqueue_on_commit()`` / ``aenqueue_on_commit()`` (#161). Runs go through the real worker,
in this process (``run_queued``), so the backoffs' arguments can be looked at."""

from __future__ import annotations

import asyncio
import functools
import warnings
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connections, transaction
from django.test import override_settings

import taskmill
from taskmill.backoff import read_form, takes_result
from taskmill.compat import TASKS_FRAMEWORK, InvalidTask, TaskResultStatus, task_backends
from taskmill.exceptions import InvalidTaskArguments
from taskmill.models import Run, RunStatus
from taskmill.retries import max_attempts_for, retry_delay
from taskmill.testing import run_queued
from tests.testapp import proposal_tasks

pytestmark = pytest.mark.django_db(transaction=True)
NO_DATABASE = pytest.mark.django_db(transaction=False)

# What the backend's OPTIONS["BACKOFF"] was given (the ids of the runs it decided for).
options_backoff_calls: list[str] = []


def options_backoff(exception: BaseException, task_result: Any) -> float:
    options_backoff_calls.append(None if task_result is None else task_result.id)
    return 0


def tasks_setting(options: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """The test settings' TASKS, with other OPTIONS (and keys beside them) for "default"."""
    default = {**settings.TASKS["default"], **params}
    if options is not None:
        default["OPTIONS"] = options
    return {"default": default}


def row(result) -> Run:
    return Run.objects.get(pk=int(result.id))


@pytest.fixture(autouse=True)
def _forget_calls():
    proposal_tasks.calls.clear()
    options_backoff_calls.clear()


# -- #142: backoff(exception, task_result) -----------------------------------------------------


def test_a_new_form_backoff_gets_the_exception_and_the_result_and_decides():
    result = proposal_tasks.fails_with_new_backoff.enqueue()

    # The first attempt fails; its backoff asks for 120 s: the retry is READY, not due.
    drained = run_queued(include_deferred=False)
    assert (drained.attempts, drained.left) == (1, 1)
    run = row(result)
    assert (run.status, run.attempt, run.due) == (RunStatus.READY, 1, False)
    waited = run.available_at - run.last_attempted_at
    assert timedelta(seconds=120) <= waited <= timedelta(seconds=130), waited
    # Honoured: a worker now finds nothing due.
    assert run_queued(include_deferred=False).attempts == 0

    # What the backoff was given: the raw exception, and the run's TaskResult as the failing
    # attempt sees it (FAILED, this attempt counted, its error last).
    [first] = proposal_tasks.calls
    assert type(first["exception"]) is ConnectionError
    assert str(first["exception"]) == "attempt 1 failed"
    assert (first["id"], first["attempts"], first["status"]) == (
        result.id,
        1,
        TaskResultStatus.FAILED,
    )
    assert first["errors"] == ["builtins.ConnectionError"]
    assert "attempt 1 failed" in first["tracebacks"][0]
    # The attempt's own view was not changed: the stored run says READY, one error.
    result.refresh()
    assert result.status == TaskResultStatus.READY and len(result.errors) == 1

    # The retry fails too, and the backoff returns None: no more retries, whatever
    # max_attempts (5) says.
    run_queued()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert (row(result).attempt, len(result.errors)) == (2, 2)
    second = proposal_tasks.calls[1]
    assert (second["id"], second["attempts"], len(second["errors"])) == (result.id, 2, 2)
    assert "attempt 2 failed" in second["tracebacks"][1]
    assert len(proposal_tasks.calls) == 2


def test_the_old_form_still_works_and_warns_once_where_the_task_is_defined():
    with pytest.warns(DeprecationWarning) as caught:
        old = taskmill.task(max_attempts=3, backoff=proposal_tasks.counted_backoff)(
            proposal_tasks.fails_for_old_backoff
        )
    [warning] = [w for w in caught if "deprecated form" in str(w.message)]
    message = str(warning.message)
    assert "counted_backoff takes taskmill's deprecated form backoff(failures, exception)" in (
        message
    )
    assert "backoff(exception, task_result) -> seconds | None" in message
    assert "https://github.com/django/new-features/issues/142" in message
    assert warning.filename == __file__  # the line that defined the task

    # Once: a copy made by .using(), and the worker's calls, do not warn again.
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        result = old.using(max_attempts=3).enqueue()
        drained = run_queued()
    assert [str(w.message) for w in again if w.category is DeprecationWarning] == []

    assert drained.attempts == 3
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and len(result.errors) == 3
    assert [(c["backoff"], c["failures"], type(c["exception"])) for c in proposal_tasks.calls] == [
        ("old", 1, ConnectionError),
        ("old", 2, ConnectionError),
    ]


def _new_partial(base: float, exception: BaseException, task_result: Any) -> float:
    return base


def _old_with_base(failures: int, exc: BaseException, base: float = 1.0) -> float:
    return base


class _Policy:
    def decide(self, exception, task_result):
        return 0

    def __call__(self, failures, exc):
        return 0


@functools.wraps(proposal_tasks.own_backoff)
def _wrapped(*args: Any, **kwargs: Any) -> Any:
    return proposal_tasks.own_backoff(*args, **kwargs)


def _unwrapped(*args: Any, **kwargs: Any) -> Any:
    return 0


def _annotated_int(a, b):
    return 0


_annotated_int.__annotations__ = {"a": int}  # a real type, not a postponed string


def _annotated_strings(a: ValueError, b: Any) -> float:  # strings: `from __future__`
    return 0


def _annotated_result(a, b: TaskResultStatus | None) -> float:  # neither: names decide
    return 0


@NO_DATABASE
@pytest.mark.parametrize(
    ("backoff", "form"),
    [
        (lambda exception, task_result: 0, True),
        (lambda exc, result: 0, True),
        (lambda e, task_result=None: 0, True),
        (lambda failures, exc: 0, False),
        (lambda attempt, exception: 0, False),
        (lambda a, exception: 0, False),
        (lambda a, b: 0, None),
        (lambda *args: 0, None),
        (functools.partial(_new_partial, 2.0), True),
        (functools.partial(_old_with_base, base=2.0), False),
        (_Policy().decide, True),
        (_Policy(), False),
        (_wrapped, True),  # functools.wraps: the wrapped function's signature
        (_unwrapped, None),
        (_annotated_int, False),
        (_annotated_strings, True),
        (_annotated_result, None),
        (proposal_tasks.own_backoff, True),
        (proposal_tasks.counted_backoff, False),
    ],
)
def test_the_rule_that_tells_the_two_forms_apart(backoff, form):
    assert read_form(backoff) is form


@NO_DATABASE
def test_what_takes_neither_form_is_refused_when_the_task_is_defined():
    for backoff in (lambda task_result: 30, lambda *, exception, task_result: 30, 30):
        with pytest.raises(TypeError):
            read_form(backoff)
    with pytest.raises(InvalidTask, match=r"backoff must be a callable backoff\(exception"):
        taskmill.task(backoff=lambda task_result: 30)(proposal_tasks.fails_for_old_backoff)


@NO_DATABASE
def test_an_undecided_backoff_is_called_in_the_old_form_and_says_how_to_name_it():
    def undecided(a, b):
        return a  # the failures, in the old form

    with pytest.warns(DeprecationWarning, match="does not say by its signature which form"):
        assert takes_result(undecided) is False
    task = proposal_tasks.fails_plainly.using(max_attempts=5)
    object.__setattr__(task, "backoff", undecided)
    assert retry_delay(task, None, 3, ConnectionError()) == 3.0


@NO_DATABASE
def test_taskmill_s_own_backoffs_are_in_the_new_form():
    from taskmill.contrib.mail.tasks import send_queued_email

    assert read_form(send_queued_email.backoff) is True


# -- #142: the backend's MAX_ATTEMPTS and BACKOFF ------------------------------------------------


def test_the_backend_options_are_defaults_that_a_task_and_a_call_override():
    backoff_path = f"{__name__}.options_backoff"
    with override_settings(TASKS=tasks_setting({"MAX_ATTEMPTS": 3, "BACKOFF": backoff_path})):
        plain = proposal_tasks.fails_plainly.enqueue()
        own_attempts = proposal_tasks.fails_with_own_attempts.enqueue()  # max_attempts=2
        own_backoff = proposal_tasks.fails_with_own_backoff.enqueue()
        own_jitter = proposal_tasks.fails_with_own_jitter.enqueue()  # backoff_base=0.001
        per_call = proposal_tasks.fails_plainly.using(max_attempts=1).enqueue()
        run_queued()
        assert task_backends["default"].check() == []  # MAX_ATTEMPTS, BACKOFF: known

    assert [row(result).attempt for result in (plain, own_attempts, per_call)] == [
        3,  # the backend's MAX_ATTEMPTS
        2,  # the task's own max_attempts
        1,  # .using() over both
    ]
    assert [row(result).attempt for result in (own_backoff, own_jitter)] == [3, 3]
    assert all(row(result).status == RunStatus.FAILED for result in (plain, per_call))
    # The backend's BACKOFF decided for the tasks with no backoff of their own.
    assert sorted(options_backoff_calls) == sorted([plain.id] * 2 + [own_attempts.id])
    assert [call["id"] for call in proposal_tasks.calls] == [own_backoff.id] * 2

    # Without the OPTIONS: taskmill's default, one attempt.
    again = proposal_tasks.fails_plainly.enqueue()
    run_queued()
    assert row(again).attempt == 1 and len(options_backoff_calls) == 3


@NO_DATABASE
def test_the_run_s_own_alias_gives_the_defaults_spelt_either_way():
    setting = tasks_setting(MAX_ATTEMPTS=4, BACKOFF=options_backoff)  # the proposal's spelling
    setting["other"] = {**settings.TASKS["default"], "OPTIONS": {"MAX_ATTEMPTS": 2}}
    task = proposal_tasks.fails_plainly
    with override_settings(TASKS=setting):
        backend = task_backends["default"]
        assert (backend.default_max_attempts, backend.default_backoff) == (4, options_backoff)
        assert max_attempts_for(task, None, "default") == 4
        assert max_attempts_for(task, None, "other") == 2
        assert max_attempts_for(task, None, "gone") == 1  # an alias removed since
        assert max_attempts_for(task, {"max_attempts": 6}, "other") == 6
        assert max_attempts_for(proposal_tasks.fails_with_own_attempts, None, "default") == 2
        exc = ConnectionError()
        assert retry_delay(task, None, 3, exc, backend="default") == 0
        assert retry_delay(task, None, 4, exc, backend="default") is None
        assert retry_delay(task, None, 1, exc, backend="other") is not None  # the default jitter
        assert retry_delay(task, None, 2, exc, backend="other") is None
    # The backend's BACKOFF gets the result when the worker has one (None here).
    assert options_backoff_calls == [None]


@NO_DATABASE
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            tasks_setting({"MAX_ATTEMPTS": 0}),
            r"OPTIONS\['MAX_ATTEMPTS'\] must be a whole number >= 1",
        ),
        (tasks_setting({"MAX_ATTEMPTS": "3"}), r"must be a whole number >= 1 .*not '3'"),
        (tasks_setting({"MAX_ATTEMPTS": True}), r"must be a whole number >= 1 .*not True"),
        (tasks_setting(MAX_ATTEMPTS=-1), r"TASKS\['default'\]\['MAX_ATTEMPTS'\] must be"),
        (
            tasks_setting({"BACKOFF": "tests.nowhere.backoff"}),
            r"OPTIONS\['BACKOFF'\] names 'tests.nowhere.backoff', which cannot be imported",
        ),
        (tasks_setting({"BACKOFF": 30}), r"must be a callable backoff\(exception, task_result\)"),
        (
            tasks_setting({"BACKOFF": "tests.testapp.proposal_tasks.counted_backoff"}),
            r"counted_backoff takes \(failures, exception\), taskmill's deprecated form",
        ),
        (
            tasks_setting({"MAX_ATTEMPTS": 3}, MAX_ATTEMPTS=4),
            r"sets MAX_ATTEMPTS twice, differently",
        ),
    ],
)
def test_bad_options_are_refused_when_the_backend_is_set_up(setting, message):
    with override_settings(TASKS=setting):
        with pytest.raises(ImproperlyConfigured, match=message):
            task_backends["default"]
        # manage.py check sets every backend up: it stops on the same message.
        with pytest.raises(ImproperlyConfigured, match=message):
            call_command("check")


# -- #161: enqueue_on_commit ---------------------------------------------------------------------


def test_enqueue_on_commit_waits_for_the_commit_and_forgets_a_rollback():
    remember = proposal_tasks.remember
    value = ["as", "called"]
    with transaction.atomic():
        assert remember.enqueue_on_commit(value) is None  # no run exists before the commit
        value.append("later")  # the arguments were copied at the call
        assert not Run.objects.exists()
    [run] = Run.objects.all()
    assert (run.task_path, run.args) == (remember.module_path, [["as", "called"]])

    with pytest.raises(RuntimeError), transaction.atomic():
        remember.enqueue_on_commit("rolled back")
        raise RuntimeError
    with transaction.atomic():
        remember.using(priority=7, queue_name="high").enqueue_on_commit(value="kept")
        try:
            with transaction.atomic():  # a savepoint rolled back: its enqueue goes with it
                remember.enqueue_on_commit("savepoint")
                raise RuntimeError
        except RuntimeError:
            pass
    assert Run.objects.count() == 2
    kept = Run.objects.exclude(pk=run.pk).get()
    assert (kept.kwargs, kept.priority, kept.queue_name) == ({"value": "kept"}, 7, "high")

    # Not in a transaction: at once, as transaction.on_commit() does.
    remember.enqueue_on_commit("now")
    assert ["now"] in list(Run.objects.values_list("args", flat=True))
    # A plain run: the worker runs it.
    assert run_queued().attempts == 3
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.SUCCESSFUL}


def test_enqueue_on_commit_checks_the_call_at_once():
    with transaction.atomic():
        with pytest.raises(InvalidTaskArguments, match=r"args\[0\] is a builtins.object"):
            proposal_tasks.remember.enqueue_on_commit(object())
        with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid"):
            proposal_tasks.remember.using(queue_name="nowhere").enqueue_on_commit(1)
    assert not Run.objects.exists()


def test_aenqueue_on_commit_waits_for_the_commit_around_it():
    remember = proposal_tasks.remember
    with transaction.atomic():
        # Async code under the sync code that opened the transaction, as in a view.
        assert async_to_sync(remember.aenqueue_on_commit)("async") is None
        assert not Run.objects.exists()
    assert list(Run.objects.values_list("args", flat=True)) == [["async"]]

    with pytest.raises(RuntimeError), transaction.atomic():
        async_to_sync(remember.aenqueue_on_commit)("rolled back")
        raise RuntimeError
    assert Run.objects.count() == 1

    async def outside_any_transaction() -> None:
        await remember.using(priority=3).aenqueue_on_commit("at once")
        # The sync_to_async thread opened its own connection: close it before teardown.
        await sync_to_async(connections.close_all)()

    asyncio.run(outside_any_transaction())
    assert Run.objects.filter(priority=3).count() == 1


def test_enqueue_on_commit_on_another_backend():
    dummy = f"{TASKS_FRAMEWORK}.backends.dummy.DummyBackend"
    setting = {**tasks_setting(), "elsewhere": {"BACKEND": dummy}}
    with override_settings(TASKS=setting):
        elsewhere = proposal_tasks.remember.using(backend="elsewhere")
        with transaction.atomic():
            elsewhere.enqueue_on_commit(5)
            assert task_backends["elsewhere"].results == []
        assert [result.args for result in task_backends["elsewhere"].results] == [[5]]
    assert not Run.objects.exists()
