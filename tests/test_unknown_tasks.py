"""Runs whose task no worker knows: the skip scan that finds the task paths stored, the capped
count of the runs under unknown ones, ``taskmill status`` (text and --json), and pointing runs
at a registered task."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from taskmill import unknown_tasks
from taskmill.exceptions import TaskNotRegistered
from taskmill.models import Run, RunStatus
from taskmill.unknown_tasks import (
    COUNT_CAP,
    PATHS_PER_STATEMENT,
    repoint,
    stored_task_paths,
    unknown_task_paths,
)
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

GONE = "tests.testapp.tasks.gone"  # a module that exists, no task there
GONE_MODULE = "tests.testapp.removed_module.job"  # a module that does not
ALIAS = "tests.testapp.reports_v1.build_report"  # an alias of tasks.build_report


def run_rows(task_path: str, count: int = 1, status: str = RunStatus.READY, **fields) -> list[Run]:
    now = timezone.now()
    return Run.objects.bulk_create(
        Run(
            task_path=task_path, backend="default", queue_name="default", args=[], kwargs={},
            enqueued_at=now, available_at=now, status=status, **fields,
        )
        for _ in range(count)
    )  # fmt: skip


def test_the_skip_scan_reads_each_stored_path_once_across_statements():
    # More distinct paths than one statement reads (MySQL stops a recursion at 1,000 levels).
    paths = [f"tests.forged.path_{index:04d}" for index in range(PATHS_PER_STATEMENT * 2 + 7)]
    now = timezone.now()
    Run.objects.bulk_create(
        Run(task_path=path, backend="default", queue_name="default", args=[], kwargs={},
            enqueued_at=now, available_at=now)
        for path in paths * 2  # each twice: read once
    )  # fmt: skip
    run_rows("tests.testapp.tasks.add", 3)
    found, complete = stored_task_paths("default")
    assert found == sorted([*paths, "tests.testapp.tasks.add"]) and complete
    some, complete = stored_task_paths("default", limit=PATHS_PER_STATEMENT + 3)
    assert some == found[: PATHS_PER_STATEMENT + 3] and not complete
    assert stored_task_paths("default") == (found, True)  # nothing changed by reading
    Run.objects.all().delete()
    assert stored_task_paths("default") == ([], True)


def test_unknown_paths_are_neither_registered_nor_aliases_and_their_runs_are_counted():
    run_rows("tests.testapp.tasks.add", 2)  # a task
    run_rows(ALIAS, 2)  # an alias of one: known
    run_rows(GONE, 3)
    run_rows(GONE_MODULE, 1, status=RunStatus.FAILED)
    assert unknown_task_paths("default") == [GONE_MODULE, GONE]  # by name
    found = unknown_tasks.unknown_tasks("default")
    assert (found.runs, found.more, found.complete) == (4, False, True)
    assert found.paths == {GONE: 3, GONE_MODULE: 1}
    # Counted no further than the cap, however many there are.
    run_rows(GONE, COUNT_CAP)
    capped = unknown_tasks.unknown_tasks("default")
    assert (capped.runs, capped.more) == (COUNT_CAP, True)


def test_status_shows_the_runs_of_unknown_tasks_in_text_and_json():
    run_rows(GONE, 2)
    run_rows("tests.testapp.tasks.add", 1)
    text = io.StringIO()
    call_command("taskmill", "status", stdout=text)
    lines = text.getvalue().splitlines()
    heading = lines.index("Runs of unknown tasks: no task registered at their path (2)")
    assert lines[heading + 2].split() == [GONE, "2"]
    document = io.StringIO()
    call_command("taskmill", "status", "--json", stdout=document)
    assert json.loads(document.getvalue())["unknown_tasks"] == {
        "runs": 2,
        "more": False,
        "paths": {GONE: 2},
        "complete": True,
    }
    Run.objects.filter(task_path=GONE).delete()
    text = io.StringIO()
    call_command("taskmill", "status", stdout=text)
    assert "Runs of unknown tasks: no task registered at their path (0)\n  none" in text.getvalue()


def test_repoint_changes_runs_not_running_and_says_what_it_left():
    runs = {
        status: run_rows(GONE, status=status)[0]
        for status in (
            RunStatus.READY,
            RunStatus.WAITING,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.RUNNING,
            RunStatus.SUCCESSFUL,
        )
    }
    already = run_rows("tests.testapp.tasks.add")[0]
    ids = [run.pk for run in runs.values()] + [already.pk, 999_999_999]
    done = repoint(ids, "tests.testapp.tasks.add")
    moved = [runs[status].pk for status in ("READY", "WAITING", "FAILED", "CANCELLED")]
    assert {path: sorted(ids) for path, ids in done.by_old_path.items()} == {GONE: sorted(moved)}
    assert (done.changed, done.left, done.problems) == (4, 4, [])
    paths = dict(Run.objects.values_list("pk", "task_path"))
    assert paths[runs[RunStatus.RUNNING].pk] == GONE  # a worker holds it
    assert paths[runs[RunStatus.SUCCESSFUL].pk] == GONE  # nothing left to run
    assert paths[runs[RunStatus.READY].pk] == "tests.testapp.tasks.add"
    assert unknown_task_paths("default") == [GONE]

    # Only at a task's own path: not an alias, not an unknown path.
    for target in (ALIAS, GONE_MODULE):
        with pytest.raises(TaskNotRegistered, match="only at a registered task's own path"):
            repoint([runs[RunStatus.READY].pk], target)


def test_repoint_leaves_a_run_whose_unique_key_the_task_holds_and_moves_the_others():
    held = tasks.unique_job.using(unique_key="k-1").enqueue("x")  # active, holds k-1
    clash, free = run_rows(GONE, unique_key="k-1")[0], run_rows(GONE, unique_key="k-2")[0]
    other = run_rows(GONE)[0]
    done = repoint([clash.pk, free.pk, other.pk], held.task.module_path)
    assert sorted(done.by_old_path[GONE]) == sorted([free.pk, other.pk])
    assert done.problems == [
        f"run {clash.pk}: an active run of {held.task.module_path} holds its unique key"
    ]
    assert Run.objects.get(pk=clash.pk).task_path == GONE
