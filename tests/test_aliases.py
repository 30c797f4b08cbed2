"""Task aliases: runs and schedules stored under the path a task had before a rename run the
renamed task, in a real worker; a path names one task; and a path no task knows is still
refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

import taskmill
from taskmill import registry
from taskmill.compat import (
    DECORATOR_TAKES_OPTIONS,
    InvalidTask,
    TaskResultMismatch,
    TaskResultStatus,
)
from taskmill.exceptions import TaskAliasConflict, TaskmillError, TaskNotRegistered
from taskmill.models import Run, RunStatus, Schedule
from taskmill.scheduler import firing
from taskmill.tasks import Task
from tests.conftest import read_records
from tests.testapp import renamed_tasks, tasks

pytestmark = pytest.mark.django_db(transaction=True)
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

# build_report moved to tests.testapp.tasks from a module that no longer exists.
MOVED_FROM = "tests.testapp.reports_v1.build_report"
MOVED_TO = "tests.testapp.tasks.build_report"
# send_weekly_digest was send_digest in the same module, which the worker imports on demand.
RENAMED_FROM = "tests.testapp.renamed_tasks.send_digest"


def stored_run(task_path: str, *args) -> Run:
    """A run as the old code enqueued it: its row names the old path."""
    now = timezone.now()
    return Run.objects.create(
        task_path=task_path,
        backend="default",
        queue_name="default",
        args=list(args),
        kwargs={},
        enqueued_at=now,
        available_at=now,
    )


def test_runs_stored_under_old_paths_run_the_renamed_tasks(run_worker, record_dir):
    moved = stored_run(MOVED_FROM, "2027-01-04")
    renamed = stored_run(RENAMED_FROM, 7)
    current = tasks.build_report.enqueue("2027-01-05")  # the new path, as new code enqueues
    nowhere = stored_run("tests.testapp.tasks.gone", "x")  # neither a task's path nor an alias

    run_worker("--burst", "--no-scheduler")

    for run in (moved, renamed, nowhere):
        run.refresh_from_db()
    assert (moved.status, moved.return_value) == (RunStatus.SUCCESSFUL, "report for 2027-01-04")
    assert moved.task_path == MOVED_FROM  # the row keeps the path it was stored under
    assert (renamed.status, renamed.return_value) == (RunStatus.SUCCESSFUL, "digest for 7")
    records = read_records(record_dir)
    assert sorted(line for line in records if line.startswith("build_report")) == [
        "build_report 2027-01-04",
        "build_report 2027-01-05",
    ]
    assert Run.objects.get(pk=int(current.id)).status == RunStatus.SUCCESSFUL
    # Only registered paths and their aliases run: the rule a row cannot get past.
    assert nowhere.status == RunStatus.FAILED
    error = nowhere.errors[-1]
    assert error["exception_class_path"] == "taskmill.exceptions.TaskNotRegistered"
    assert "no task declares it among its aliases" in error["traceback"]

    # get_result() of a run stored under an alias, through the renamed task.
    result = tasks.build_report.get_result(str(moved.pk))
    assert (result.status, result.return_value) == (
        TaskResultStatus.SUCCESSFUL,
        "report for 2027-01-04",
    )
    assert result.task.module_path == MOVED_TO
    assert renamed_tasks.send_weekly_digest.get_result(str(renamed.pk)).return_value == (
        "digest for 7"
    )
    with pytest.raises(TaskResultMismatch):
        tasks.add.get_result(str(moved.pk))  # still another task's run


def test_a_schedule_stored_under_an_old_path_fires_the_renamed_task(run_worker, record_dir):
    schedule = Schedule(
        name="old report",
        task_path=MOVED_FROM,
        kind="interval",
        interval=dt.timedelta(hours=1),
        kwargs={"day": "scheduled"},
        timezone="UTC",
    )
    schedule.full_clean()  # a schedule may name a task by one of its aliases
    schedule.save()
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=timezone.now())

    assert firing.tick().runs == 1
    run = Run.objects.get(schedule=schedule)
    assert run.task_path == MOVED_TO  # enqueued as the task it names now

    run_worker("--burst", "--no-scheduler")
    run.refresh_from_db()
    assert (run.status, run.return_value) == (RunStatus.SUCCESSFUL, "report for scheduled")
    assert "build_report scheduled" in read_records(record_dir)


# -- the registry --------------------------------------------------------------------------------


def old_reader() -> None: ...


def new_reader() -> None: ...


def rival_reader() -> None: ...


def squatter() -> None: ...


def renamed_squatter() -> None: ...


@IN_A_TRANSACTION
def test_an_alias_resolves_to_its_task_and_copies_register_nothing_new():
    made = taskmill.task(aliases=["tests.test_aliases.ancient_reader"])(new_reader)
    assert made.aliases == ("tests.test_aliases.ancient_reader",)
    assert registry.resolve("tests.test_aliases.ancient_reader") is made
    assert registry.registered_aliases()["tests.test_aliases.ancient_reader"] == made.module_path
    # .using() copies and a second definition of the same task declare the same aliases.
    assert made.using(priority=5).aliases == made.aliases
    again = taskmill.task(aliases=["tests.test_aliases.ancient_reader"])(new_reader)
    assert registry.resolve("tests.test_aliases.ancient_reader") is made
    assert again.aliases == made.aliases
    # A list, duplicates once, in order.
    twice = ["tests.test_aliases.reader_v1", "tests.test_aliases.reader_v1", "old.reader"]
    listed = taskmill.task(aliases=twice)(old_reader)
    assert listed.aliases == ("tests.test_aliases.reader_v1", "old.reader")


@IN_A_TRANSACTION
def test_a_path_names_one_task():
    before = (registry.registered_tasks(), registry.registered_aliases())
    # An alias that is another registered task's path.
    with pytest.raises(TaskAliasConflict, match="which is the path of another registered task"):
        taskmill.task(aliases=["tests.testapp.tasks.add"])(rival_reader)
    # Refused whole: nothing of it was registered, and add is still add.
    assert (registry.registered_tasks(), registry.registered_aliases()) == before
    assert registry.resolve("tests.testapp.tasks.add") is tasks.add

    # An alias another task declares already.
    with pytest.raises(TaskAliasConflict, match=r"which 'tests\.testapp\.tasks\.build_report'"):
        taskmill.task(aliases=[MOVED_FROM])(rival_reader)
    assert registry.resolve(MOVED_FROM) is tasks.build_report

    # A task registering at a path that another task declares as its alias: refused too,
    # whichever of the two modules is imported first.
    taskmill.task(aliases=["tests.test_aliases.squatter"])(renamed_squatter)
    declared = r"already declares 'tests\.test_aliases\.squatter'"
    with pytest.raises(TaskAliasConflict, match=declared):
        taskmill.task(squatter)
    # Every such error is taskmill's and the framework's own.
    with pytest.raises(TaskmillError):
        taskmill.task(aliases=["tests.testapp.tasks.noop"])(rival_reader)
    with pytest.raises(InvalidTask):
        taskmill.task(aliases=["tests.testapp.tasks.noop"])(rival_reader)


@IN_A_TRANSACTION
@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ("tests.old.reader", "aliases takes a list of import paths, not the string"),
        (42, "aliases takes a list of import paths, not 42"),
        (["reader"], "not 'reader'"),
        (["tests..reader"], "not 'tests..reader'"),
        (["tests.1reader"], "not 'tests.1reader'"),
        ([None], "not None"),
        (["tests.test_aliases.old_reader"], "cannot be its own alias"),
    ],
)
def test_invalid_aliases_are_refused_at_definition(aliases, message):
    with pytest.raises(InvalidTask, match=message):
        taskmill.task(aliases=aliases)(old_reader)


@IN_A_TRANSACTION
def test_an_unknown_path_is_still_not_registered():
    with pytest.raises(TaskNotRegistered, match="no task declares it among its aliases"):
        registry.resolve("tests.testapp.tasks.gone")
    with pytest.raises(TaskNotRegistered, match=r"importing 'tests\.testapp\.reports_v1' failed"):
        registry.resolve("tests.testapp.reports_v1.gone")


@IN_A_TRANSACTION
@pytest.mark.skipif(
    not DECORATOR_TAKES_OPTIONS, reason="only Django 6.1's task() passes options to backends"
)
def test_djangos_own_decorator_takes_aliases():
    cleanup = renamed_tasks.cleanup
    assert isinstance(cleanup, Task)
    assert cleanup.aliases == ("tests.testapp.renamed_tasks.old_cleanup",)
    assert registry.resolve("tests.testapp.renamed_tasks.old_cleanup") is cleanup
