"""Django 6.1 with the django-tasks backport installed too (issue 25).

Wagtail 8 imports ``django_tasks`` whatever the Django, so a project on 6.1 may have both
frameworks. With ``TASKS`` naming taskmill's backend, a task made by either decorator (or
taskmill's) is taskmill's: it runs in a real worker and its result reads back through the
API of the package that made it. Receivers of either package's ``task_enqueued``,
``task_started`` and ``task_finished`` hear each run once. The backport's registry makes
its own instance of taskmill's backend from ``TASKS``; its check must not repeat Django's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest

from taskmill.compat import TASKS_FRAMEWORK
from tests.conftest import ROOT, read_records

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("django_tasks") is None,
        reason="needs the django-tasks backport installed (pip install django-taskmill[backport])",
    ),
    pytest.mark.skipif(
        TASKS_FRAMEWORK != "django.tasks" or django.VERSION < (6, 1),
        reason="coexistence of the backport with Django's own django.tasks: Django 6.1+ only "
        "(on Django 5.2 the backport is the framework)",
    ),
    pytest.mark.django_db(transaction=True),
]

BACKPORT = {"TASKMILL_TEST_BACKPORT": "1"}
# Every signal of both packages, once each, for a run that was enqueued and ran.
EACH_ONCE = {
    (package, signal): 1
    for package in ("django.tasks", "django_tasks")
    for signal in ("task_enqueued", "task_started", "task_finished")
}


@pytest.fixture
def heard_here() -> Iterator[list[str]]:
    """What the receivers of both packages heard in this (the enqueuing) process."""
    from tests.testapp.coexist_receivers import listen

    lines: list[str] = []
    disconnect = listen(lines.append)
    yield lines
    disconnect()


def heard_by_run(lines: list[str]) -> dict[str, list[list[str]]]:
    """Each line a receiver wrote, split, by run id."""
    by_run: dict[str, list[list[str]]] = {}
    for line in lines:
        package, signal, run_id, *rest = line.split()
        by_run.setdefault(run_id, []).append([package, signal, *rest])
    return by_run


def test_a_task_of_each_decorator_is_taskmills_and_reads_back_through_its_own_api(
    run_worker: Callable[..., Any],
) -> None:
    import django.tasks as framework
    import django_tasks as backport

    from taskmill.backend import DatabaseBackend
    from taskmill.tasks import Task
    from tests.testapp import coexist_tasks as tasks

    made = {
        "backport": tasks.add_by_backport,
        "django": tasks.add_by_django,
        "taskmill": tasks.add_by_taskmill,
        "backport, async": tasks.add_by_backport_on_the_loop,
    }
    for how, task in made.items():
        assert isinstance(task, Task), how
        assert isinstance(task.get_backend(), DatabaseBackend), how
    results = {how: task.enqueue(2, index) for index, (how, task) in enumerate(made.items())}
    failed = tasks.fail_by_backport_in_a_child.enqueue("broke in a child")
    assert tasks.fail_by_backport_in_a_child.timeout == 30  # taskmill's option, kept

    run_worker("--burst", "--no-scheduler", env=BACKPORT)

    # The backport's API: the task's get_result(), its registry's default backend, its
    # statuses; the same runs, read by its own calls.
    for how in ("backport", "backport, async"):
        result = made[how].get_result(results[how].id)
        assert result.status == backport.TaskResultStatus.SUCCESSFUL, how
        assert result.is_finished and result.return_value == 2 + list(made).index(how)
        again = backport.default_task_backend.get_result(results[how].id)
        assert again.status == backport.TaskResultStatus.SUCCESSFUL
    # Django's: the same through django.tasks.
    for how in ("django", "taskmill"):
        result = made[how].get_result(results[how].id)
        assert result.status == framework.TaskResultStatus.SUCCESSFUL, how
        assert result.return_value == 2 + list(made).index(how)
    failed.refresh()
    assert failed.status == backport.TaskResultStatus.FAILED
    assert failed.errors[-1].exception_class is ValueError
    assert "broke in a child" in failed.errors[-1].traceback


def test_a_missing_or_mismatched_result_is_caught_as_either_packages_error() -> None:
    """Code written against the backport (``except django_tasks.exceptions...``) catches
    what taskmill raises, and code written against Django's still does."""
    import django.tasks.exceptions as framework
    import django_tasks
    import django_tasks.exceptions as backport

    from tests.testapp import coexist_tasks as tasks

    for package in (framework, backport):
        with pytest.raises(package.TaskResultDoesNotExist):
            tasks.add_by_backport.get_result("999999999")
        with pytest.raises(package.TaskResultDoesNotExist):
            django_tasks.default_task_backend.get_result("not a run id")
    other = tasks.add_by_django.enqueue(1, 2)
    for package in (framework, backport):
        with pytest.raises(package.TaskResultMismatch, match="add_by_django"):
            tasks.add_by_backport.get_result(other.id)


def test_both_packages_signals_reach_their_receivers_once_each_for_a_run_of_either_kind(
    run_worker: Callable[..., Any], record_dir: Path, heard_here: list[str]
) -> None:
    from tests.testapp import coexist_tasks as tasks

    runs = {
        "backport": tasks.add_by_backport.enqueue(1, 2),
        "backport, async": tasks.add_by_backport_on_the_loop.enqueue(1, 2),
        "backport, in a child": tasks.fail_by_backport_in_a_child.enqueue("broke"),
        "django": tasks.add_by_django.enqueue(1, 2),
        "django, failing": tasks.fail_by_django.enqueue("broke"),
        "taskmill": tasks.add_by_taskmill.enqueue(1, 2),
    }
    run_worker("--burst", "--no-scheduler", env=BACKPORT)

    in_worker = [line for line in read_records(record_dir) if line.startswith("django")]
    heard = heard_by_run(heard_here + in_worker)
    failing = {"backport, in a child", "django, failing"}
    for how, result in runs.items():
        calls = heard.get(result.id, [])
        assert Counter((package, signal) for package, signal, *_ in calls) == EACH_ONCE, how
        assert {sender for *_, sender, _ in calls} == {"DatabaseBackend"}, how
        finished = {package: rest for package, signal, *rest in calls if signal == "task_finished"}
        # Both packages' receivers see the same: the outcome, and what the task raised in
        # sys.exc_info() (a child's failure arrives as taskmill's RaisedInChild).
        assert finished["django.tasks"] == finished["django_tasks"], how
        status, _, handled = finished["django_tasks"]
        assert status == ("FAILED" if how in failing else "SUCCESSFUL"), how
        assert (handled != "-") == (how in failing), how


def test_the_backports_registry_makes_taskmills_backend_and_its_checks_are_said_once(
    subprocess_env: dict[str, str],
) -> None:
    """With ``django_tasks`` in INSTALLED_APPS (its README asks for it) both packages' checks
    run every backend their registry made from TASKS: a warning is still said once."""
    script = """
import json
import django
django.setup()
import django.tasks, django_tasks
from django.core import checks
from django.test.utils import override_settings

tasks = {"default": {"BACKEND": "taskmill.backend.DatabaseBackend", "OPTIONS": {"BOGUS": 1}}}
with override_settings(TASKS=tasks):
    ours, theirs = django.tasks.task_backends["default"], django_tasks.task_backends["default"]
    ids = [message.id for message in checks.run_checks()]
    print(json.dumps({
        "classes": [type(ours).__qualname__, type(theirs).__qualname__],
        "twins": ours is not theirs,
        "task_class": django_tasks.task_backends["default"].task_class.__module__,
        "ids": ids,
    }))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**subprocess_env, **BACKPORT},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.splitlines()[-1])
    assert said["classes"] == ["DatabaseBackend", "DatabaseBackend"]
    assert said["twins"]  # two registries, two instances of taskmill's backend
    assert said["task_class"] == "taskmill.tasks"  # so @django_tasks.task makes taskmill's
    assert said["ids"].count("taskmill.W001") == 1, said["ids"]
