"""One base for taskmill's errors: ``except TaskmillError`` catches every error taskmill raises,
and each keeps the standard base it had, so ``except ValueError`` (say) still catches it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import taskmill
from taskmill.compat import InvalidTask
from taskmill.contrib.mail.errors import PermanentEmailFailure, UnqueueableEmail
from taskmill.control import RunConflict
from taskmill.exceptions import (
    Cancel,
    CorruptRun,
    DependencyFailed,
    InvalidSchedule,
    InvalidTaskArguments,
    RunCancelled,
    TaskmillError,
    TaskNotRegistered,
    TaskTimeout,
    TooManySnoozes,
    WorkerLost,
)
from taskmill.scheduler.transfer import TransferError
from taskmill.worker.execution import TaskCrashed
from taskmill.worker.processes import ChildStartError

# Each public error and the standard bases it keeps beside TaskmillError.
STANDARD_BASES = [
    (TaskNotRegistered, (InvalidTask,)),
    (CorruptRun, (InvalidTask,)),
    (InvalidTaskArguments, (InvalidTask, TypeError)),
    (TaskTimeout, (TimeoutError,)),
    (TaskCrashed, (Exception,)),
    (ChildStartError, (RuntimeError,)),
    (WorkerLost, (Exception,)),
    (RunCancelled, (Exception,)),
    (DependencyFailed, (RunCancelled,)),
    (Cancel, (RunCancelled,)),
    (TooManySnoozes, (Exception,)),
    (InvalidSchedule, (ValueError,)),
    (RunConflict, (ValueError,)),
    (TransferError, (Exception,)),
    (UnqueueableEmail, (ValueError,)),
    (PermanentEmailFailure, (Exception,)),
]

# Stands for what a task raised in its child process: the task's own error, not taskmill's,
# so ``except TaskmillError`` must not catch it.
TASKS_OWN = {"taskmill.worker.execution.RaisedInChild"}
# Control flow inside taskmill, caught where it is raised: never seen by a user.
INTERNAL = {
    "taskmill.worker.runners.atomic.ResultNotStorable",
    # The listener's "try again later": caught by the listener's own loop, never raised out.
    "taskmill.db.listen_target.Unreachable",
}
# Raised by a task to ask for its run's fate, not an error: "not now" (taskmill.Snooze).
TASKS_REQUESTS = {"taskmill.exceptions.Snooze"}


def test_taskmill_exports_the_base_and_the_schedule_error():
    assert taskmill.TaskmillError is TaskmillError
    assert taskmill.InvalidSchedule is InvalidSchedule
    assert issubclass(TaskmillError, Exception)


@pytest.mark.parametrize(
    ("error", "bases"), STANDARD_BASES, ids=[error.__name__ for error, _ in STANDARD_BASES]
)
def test_each_error_is_a_taskmill_error_and_keeps_its_standard_base(error, bases):
    assert issubclass(error, TaskmillError)
    raised = error(["a problem"]) if error is TransferError else error("a problem")
    for base in bases:
        assert issubclass(error, base)
        # Code written against the standard base still catches it.
        with pytest.raises(base):
            raise raised
    with pytest.raises(TaskmillError):
        raise raised


def test_the_base_does_not_change_what_an_error_says():
    assert str(InvalidSchedule("Unknown time zone 'Mars/Olympus'.")) == (
        "Unknown time zone 'Mars/Olympus'."
    )
    assert TransferError(["one", "two"]).problems == ["one", "two"]
    assert str(TransferError(["one", "two"])) == "one\ntwo"


def _public_errors() -> dict[str, type[Exception]]:
    found: dict[str, type[Exception]] = {}
    for module_info in pkgutil.walk_packages(taskmill.__path__, "taskmill."):
        if ".migrations" in module_info.name:
            continue
        module = importlib.import_module(module_info.name)
        for name, value in inspect.getmembers(module, inspect.isclass):
            defined_here = value.__module__ == module.__name__
            if defined_here and issubclass(value, Exception) and not name.startswith("_"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_public_error_in_taskmill_is_a_taskmill_error():
    errors = _public_errors()
    # The search finds what it is meant to (a broken search would pass with nothing found).
    assert {error for error, _ in STANDARD_BASES} <= set(errors.values())
    others = {path for path, error in errors.items() if not issubclass(error, TaskmillError)}
    assert others - TASKS_OWN - INTERNAL - TASKS_REQUESTS == set()
    assert errors.keys() >= TASKS_OWN | TASKS_REQUESTS


def test_an_error_shows_its_class_once_even_when_its_message_starts_with_it():
    # Some libraries start their messages with the class name: the admin's error row and the
    # worker's log line show it once, not "ConnectionError: ConnectionError: ...".
    from taskmill.admin.display import error_list
    from taskmill.worker.failures import failure_summary

    error = ConnectionError("ConnectionError: upstream closed the connection")
    assert failure_summary(error) == "ConnectionError: upstream closed the connection"
    assert failure_summary(ConnectionError("upstream closed")) == "ConnectionError: upstream closed"
    assert failure_summary(ConnectionError("")) == "ConnectionError"

    entry = {
        "exception_class_path": "builtins.ConnectionError",
        "traceback": "Traceback (most recent call last):\n  ...\n"
        "ConnectionError: ConnectionError: upstream closed the connection\n",
    }
    row = str(error_list([entry]))
    assert "<strong>ConnectionError</strong>: upstream closed the connection" in row
    # The summary says it once; the traceback below keeps the exception's own words.
    assert "ConnectionError: ConnectionError" not in row.split("<details>")[0]
    assert "ConnectionError: ConnectionError" in row.split("<details>")[1]
    # A message that only mentions the class later keeps it.
    entry["traceback"] = "ValueError: not a ConnectionError: a value\n"
    entry["exception_class_path"] = "builtins.ValueError"
    assert "<strong>ValueError</strong>: not a ConnectionError: a value" in str(error_list([entry]))
