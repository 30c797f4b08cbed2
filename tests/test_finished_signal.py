"""``task_finished`` reaches its receivers with what the task raised, as under Django's own
backends: they send it inside the exception handler, and Django's log receiver logs the
ERROR line with ``sys.exc_info()``. taskmill sends it after the outcome commits, inside a
handler of the attempt's exception, so the line carries the traceback all the same."""

from __future__ import annotations

import logging
import sys

import pytest

from taskmill.compat import TASKS_FRAMEWORK, TaskResultStatus, task_finished
from taskmill.worker import Worker, WorkerOptions
from tests.testapp import execution_tasks, tasks

pytestmark = pytest.mark.django_db(transaction=True)


def work() -> None:
    assert Worker(WorkerOptions(poll_interval=0.05, burst=True)).run() == 0


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == TASKS_FRAMEWORK and record.levelno == logging.ERROR
    ]


@pytest.mark.parametrize(
    ("enqueue", "raised"),
    [
        (lambda: tasks.fail.enqueue("broke in a thread"), ValueError),
        (lambda: execution_tasks.async_fail.enqueue("broke on the loop"), ValueError),
    ],
    ids=["thread", "async"],
)
def test_the_frameworks_error_line_carries_the_tasks_exception(caplog, enqueue, raised):
    result = enqueue()
    with caplog.at_level(logging.INFO, logger=TASKS_FRAMEWORK):
        work()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    (line,) = failure_lines(caplog)
    assert result.id in line.getMessage()
    assert line.exc_info is not None and line.exc_info[0] is raised
    assert str(line.exc_info[1]).startswith("broke")
    # What a log handler prints: the task's own frame is in the traceback.
    assert "raise ValueError(message)" in caplog.text


def test_a_failure_in_a_child_process_reaches_the_log_with_the_childs_traceback(caplog):
    result = execution_tasks.fail_in_child.enqueue("broke in a child")
    with caplog.at_level(logging.INFO, logger=TASKS_FRAMEWORK):
        work()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    (line,) = failure_lines(caplog)
    assert line.exc_info is not None
    text = str(line.exc_info[1])
    assert "ValueError: broke in a child" in text
    assert "raise ValueError(message)" in text  # the child's frames, as text
    assert text == result.errors[-1].traceback


def test_receivers_read_the_exception_from_sys_exc_info_and_successes_have_none():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((task_result.status, sys.exc_info()[1]))

    task_finished.connect(receiver)
    try:
        failing = tasks.fail.enqueue("seen by a receiver")
        tasks.add.enqueue(1, 2)
        work()
    finally:
        task_finished.disconnect(receiver)
    by_status = dict(seen)
    assert isinstance(by_status[TaskResultStatus.FAILED], ValueError)
    assert str(by_status[TaskResultStatus.FAILED]) == "seen by a receiver"
    assert by_status[TaskResultStatus.SUCCESSFUL] is None
    failing.refresh()
    assert failing.errors[-1].exception_class is ValueError
