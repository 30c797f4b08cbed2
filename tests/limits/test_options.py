"""The flow-control options, checked where they are given: a task's options (through
taskmill's decorator and, on Django 6.1, Django's own), a call's keys, the backend's
QUEUE_LIMITS and set_queue_limits. Bad input gets an error that says what is accepted, and
nothing is written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

import taskmill
from taskmill import Rate
from taskmill.compat import DECORATOR_TAKES_OPTIONS, InvalidTask, task_backends
from taskmill.models import Queue, Run
from taskmill.tasks import Task
from tests.testapp.limit_tasks import regional

pytestmark = pytest.mark.django_db(transaction=False)  # rolled back: no worker runs here

SPELLINGS = r'write "N/s", "N/m", "N/h" or "N/d" \(e.g. "100/m"\), or taskmill.Rate'


def limited_plain(*, account: str = "", tenant: str = "") -> None:
    """A module-level function to make tasks of (Django refuses closures)."""


BAD_OPTIONS = [
    ({"rate_limit": "100/x"}, rf"rate_limit '100/x' is not a rate: {SPELLINGS}"),
    ({"rate_limit": "abc"}, rf"rate_limit 'abc' is not a rate: {SPELLINGS}"),
    ({"rate_limit": 100}, r'rate_limit takes "N/s", "N/m", "N/h", "N/d" or taskmill.Rate, not 100'),
    ({"rate_limit": "0/m"}, r"A rate's count must be an integer >= 1, not 0"),
    ({"concurrency_limit": 0}, r"concurrency_limit must be an integer >= 1, not 0\."),
    ({"concurrency_limit": "2"}, r"concurrency_limit must be an integer >= 1, not '2'\."),
    ({"concurrency_limit": True}, r"concurrency_limit must be an integer >= 1, not True\."),
    ({"concurrency_key": "account"}, r"concurrency_key needs concurrency_limit"),
    ({"rate_key": "account"}, r"rate_key needs rate_limit"),
    (
        {"concurrency_limit": 1, "concurrency_key": 5},
        r"concurrency_key takes the name of a keyword argument or a callable",
    ),
    ({"fair_key": ""}, r"fair_key takes the name of a keyword argument or a callable"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS)
def test_bad_task_options_are_refused_saying_what_is_accepted(options, message):
    with pytest.raises(InvalidTask, match=message):
        taskmill.task(**options)(limited_plain)


@pytest.mark.parametrize(
    "spelling, rate",
    [
        ("100/m", Rate(100, timedelta(minutes=1))),
        (" 10 / s ", Rate(10, timedelta(seconds=1))),
        ("5/30s", Rate(5, timedelta(seconds=30))),
        ("2/h", Rate(2, timedelta(hours=1))),
        (Rate(3, timedelta(seconds=90)), Rate(3, timedelta(seconds=90))),
    ],
)
def test_rates_are_read_from_their_spellings(spelling, rate):
    made = taskmill.task(rate_limit=spelling)(limited_plain)
    assert made.rate_limit == rate
    assert taskmill.task(rate_limit=str(rate))(limited_plain).rate_limit == rate


@pytest.mark.skipif(
    not DECORATOR_TAKES_OPTIONS, reason="only Django 6.1's task() passes options to the backend"
)
def test_djangos_own_decorator_makes_taskmills_task_with_the_limits():
    from django.tasks import task as django_task

    made = django_task(
        concurrency_limit=2,
        concurrency_key="account",
        rate_limit="5/s",
        rate_key="account",
        fair_key="tenant",
        priority=3,
    )(limited_plain)
    assert isinstance(made, Task)
    assert (made.concurrency_limit, made.concurrency_key, made.rate_key, made.fair_key) == (
        2,
        "account",
        "account",
        "tenant",
    )
    assert made.rate_limit == Rate(5, timedelta(seconds=1))
    run = Run.objects.get(pk=made.enqueue(account="acct-7", tenant="t1").id)
    path = made.module_path
    assert (run.concurrency_key, run.rate_key, run.fair_key) == (
        f"{path}:acct-7",
        f"{path}:acct-7",
        "t1",
    )
    for options, message in BAD_OPTIONS:
        with pytest.raises(InvalidTask, match=message):
            django_task(**options)(limited_plain)


def test_a_call_without_its_key_is_refused_at_enqueue_and_nothing_is_inserted():
    missing = r"concurrency_key of .*regional is the keyword argument 'region', which this call"
    before = Run.objects.count()
    # The function's default would do for Python; the key must be given all the same.
    with pytest.raises(InvalidTask, match=missing):
        regional.enqueue()
    with pytest.raises(InvalidTask, match=rf"{missing} does not pass; pass it by name"):
        regional.enqueue("us")  # positionally
    # In a bulk enqueue, one call without it: none of the calls is inserted.
    with pytest.raises(InvalidTask, match=missing):
        regional.enqueue_many([((), {"region": "us"}), ((), {}), ((), {"region": "eu"})])
    assert Run.objects.count() == before
    # Given per call, the keyword argument is not needed.
    given = regional.using(concurrency_key="us").enqueue()
    assert Run.objects.get(pk=given.id).concurrency_key == f"{regional.module_path}:us"
    for value in ("", 7):
        with pytest.raises(InvalidTask, match=r"using\(concurrency_key=...\) takes a non-empty"):
            regional.using(concurrency_key=value)
    assert Run.objects.count() == before + 1


def tasks_setting(queue_limits: Any) -> dict[str, Any]:
    default = dict(settings.TASKS["default"])
    default["OPTIONS"] = {**default["OPTIONS"], "QUEUE_LIMITS": queue_limits}
    return {**settings.TASKS, "default": default}


@pytest.mark.parametrize(
    "queue_limits, message",
    [
        (["erp"], r"TASKS\['default'\] QUEUE_LIMITS must be a dict of queue name -> limits"),
        ({"erp": 5}, r"QUEUE_LIMITS\['erp'\] takes concurrency_limit and rate_limit, not 5"),
        (
            {"erp": {"concurrency": 5}},
            r"QUEUE_LIMITS\['erp'\] takes concurrency_limit and rate_limit, not \{'concurrency'",
        ),
        (
            {"erp": {"concurrency_limit": 0}},
            r"QUEUE_LIMITS\['erp'\]: concurrency_limit must be an integer >= 1, not 0",
        ),
        (
            {"erp": {"concurrency_limit": "5"}},
            r"QUEUE_LIMITS\['erp'\]: concurrency_limit must be an integer >= 1, not '5'",
        ),
        (
            {"erp": {"rate_limit": "100/x"}},
            rf"QUEUE_LIMITS\['erp'\]: rate_limit '100/x' is not a rate: {SPELLINGS}",
        ),
    ],
)
def test_malformed_queue_limits_are_refused_when_the_backend_is_set_up(queue_limits, message):
    with override_settings(TASKS=tasks_setting(queue_limits)):
        with pytest.raises(ImproperlyConfigured, match=message):
            task_backends["default"]
        # manage.py check sets every backend up: it stops on the same message.
        with pytest.raises(ImproperlyConfigured, match=message):
            call_command("check")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"concurrency_limit": 0}, r"concurrency_limit must be an integer >= 1, not 0"),
        ({"concurrency_limit": "2"}, r"concurrency_limit must be an integer >= 1, not '2'"),
        ({"concurrency_limit": 2.5}, r"concurrency_limit must be an integer >= 1, not 2.5"),
        ({"rate_limit": "abc"}, rf"rate_limit 'abc' is not a rate: {SPELLINGS}"),
        ({"rate_limit": "100/x"}, rf"rate_limit '100/x' is not a rate: {SPELLINGS}"),
        ({"rate_limit": 100}, r'rate_limit takes "N/s", "N/m", "N/h", "N/d" or taskmill.Rate'),
        # A good value beside a bad one: neither is written.
        ({"concurrency_limit": 3, "rate_limit": "abc"}, r"rate_limit 'abc' is not a rate"),
    ],
)
def test_bad_queue_limits_at_run_time_are_refused_and_change_nothing(options, message):
    with pytest.raises(InvalidTask, match=message):
        taskmill.set_queue_limits("erp", **options)
    assert not Queue.objects.filter(name="erp").exclude(limits_set_at=None).exists()
    # The settings' limits still hold; a good change then lands, and reset goes back.
    assert taskmill.set_queue_limits("erp", rate_limit="10/s").concurrency_limit == 2
    assert taskmill.set_queue_limits("erp", reset=True).rate is None
