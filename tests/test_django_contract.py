"""The django.tasks contract where taskmill meets code written for Django's own backends:
what they raise and record, taskmill raises and records, through the public API only
(``TaskResult`` fields, ``errors[-1].exception_class``, ``traceback``)."""

from __future__ import annotations

import array
import datetime as dt
import enum
import json
import math
import re
import uuid
from collections import OrderedDict, UserDict, UserList, deque, namedtuple
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from io import StringIO
from types import MappingProxyType
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from taskmill.compat import InvalidTask, TaskResultMismatch, TaskResultStatus, task_backends
from taskmill.models import Run
from taskmill.serialization import MAX_DEPTH
from taskmill.testing import run_queued
from tests.faults.hostile import nested, storable
from tests.testapp import contract_tasks
from tests.testapp.models import Effect

try:  # what Django's own backends do to arguments and return values
    from django.utils.json import normalize_json
except ImportError:  # Django 5.2 and the backport
    from django_tasks.utils import normalize_json


def django_takes(value: Any) -> bool:
    try:
        normalize_json(value)
    except (TypeError, ValueError):
        return False
    return True


# -- a return value JSON cannot hold ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_return_value_json_cannot_hold_fails_the_run_with_a_type_error_on_every_path(
    run_worker: Callable[..., Any],
) -> None:
    """Django's ImmediateBackend and django-tasks-db record ``TypeError``; so does taskmill,
    on a task thread, in a child process (a timeout), on the event loop and atomically."""
    results = {
        "thread": contract_tasks.returns_not_json.enqueue(),
        "child process": contract_tasks.returns_not_json_in_a_child.enqueue(),
        "async": contract_tasks.returns_not_json_async.enqueue(),
        "atomic": contract_tasks.returns_not_json_atomically.enqueue("rolled back"),
    }

    run_worker("--burst", "--no-scheduler", timeout=90)

    for path, result in results.items():
        result.refresh()
        assert result.status == TaskResultStatus.FAILED, (path, result.errors)
        assert len(result.errors) == 1, (path, result.errors)
        error = result.errors[-1]
        assert error.exception_class is TypeError, (path, error.exception_class_path)
        assert error.exception_class_path == "builtins.TypeError"
        # taskmill's own words first (which task, what in the value), then Django's.
        last_line = error.traceback.rstrip().splitlines()[-1]
        assert last_line.startswith(
            f"TypeError: Task {result.task.module_path!r} returned what JSON cannot hold: "
            "the return value is a tests.testapp.contract_tasks.NotJson."
        ), (path, last_line)
        assert last_line.endswith(
            "Unsupported type: <class 'tests.testapp.contract_tasks.NotJson'>"
        ), (path, last_line)
        with pytest.raises(ValueError, match="Task failed"):
            _ = result.return_value
    # The atomic body's row went with the transaction its return value failed.
    assert not Effect.objects.filter(name="rolled back").exists()


@pytest.mark.django_db(transaction=True)
def test_run_queued_records_the_same_type_error() -> None:
    """``run_queued()``, which a project's own tests use, runs the same worker code."""
    result = contract_tasks.returns_not_json.enqueue()
    run_queued()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class is TypeError
    assert "Unsupported type: <class " in result.errors[-1].traceback


# -- arguments JSON cannot hold ---------------------------------------------------------------


def _generator() -> Any:
    yield 1


# Values Django's own backends refuse, with Django's own message for each.
DJANGO_REFUSES = {
    "object": object(),
    "Decimal": Decimal("1.5"),
    "datetime": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    "date": dt.date(2030, 1, 1),
    "UUID": uuid.UUID(int=1),
    "set": {1, 2},
    "frozenset": frozenset({1}),
    "complex": 1j,
    "generator": _generator(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("value", DJANGO_REFUSES.values(), ids=DJANGO_REFUSES.keys())
def test_an_argument_django_refuses_raises_a_type_error_carrying_djangos_words(
    value: Any,
) -> None:
    with pytest.raises(TypeError) as by_django:
        normalize_json(value)
    django_words = str(by_django.value)
    assert django_words.startswith("Unsupported type: <class ")

    with pytest.raises(TypeError) as caught:
        contract_tasks.echo.enqueue(1, nested={"deep": [value]})
    message = str(caught.value)
    # taskmill's explanation (which task, where in the arguments), then Django's words.
    assert message.startswith(f"Cannot enqueue {contract_tasks.echo.module_path!r}: ")
    assert "kwargs['nested']['deep'][0] is a " in message
    assert message.endswith(django_words), message
    assert message.index("taskmill stores only JSON") < message.index(django_words)
    assert not Run.objects.exists()


# Values Django's own backends take (``normalize_json`` passes them): taskmill must take those
# JSON hands back unchanged, and refuse the others.
Point = namedtuple("Point", "x y")


class Colour(enum.IntEnum):
    RED = 1


class Size(enum.StrEnum):
    SMALL = "s"


DJANGO_TAKES: dict[str, Any] = {
    "None": None,
    "True": True,
    "zero": 0,
    "2**63": 2**63,
    "10**300": 10**300,
    "float": 1.5,
    "-0.0": -0.0,
    "1e16": 1e16,
    "tiny float": 5e-324,
    "text": "text",
    "empty text": "",
    "emoji": "\U0001f600",
    "line separator": "\u2028",
    "control character": "a\x01b",
    "list": [1, [2, [3]]],
    "tuple": (1, (2,)),
    "namedtuple": Point(1, 2),
    "range": range(3),
    "deque": deque([1, "a"]),
    "UserList": UserList([1]),
    "array": array.array("i", [1, 2]),
    "dict": {"a": 1, "": None},
    "OrderedDict": OrderedDict(a=(1, 2)),
    "UserDict": UserDict({"a": 1}),
    "mappingproxy": MappingProxyType({"a": [1]}),
    "IntEnum": Colour.RED,
    "StrEnum": Size.SMALL,
    "deepest": nested(MAX_DEPTH - 1),  # with the args list around it: 31 levels
    # Django takes these; JSON or a database does not give them back as they were.
    "bytes": b"bytes",
    "bytes in a list": [b"x"],
    "bytearray": bytearray(b"ab"),
    "memoryview": memoryview(b"ab"),
    "NaN": math.nan,
    "infinity": math.inf,
    "NaN in a dict": {"a": -math.inf},
    "integer key": {1: "a"},
    "float key": {1.5: "a"},
    "bool key": {True: "a"},
    "None key": {None: "a"},
    "bytes key": {b"k": "a"},
    "NUL": "a\x00b",
    "NUL in a key": {"k\x00": 1},
    "lone surrogate": "\udc00",
    "too deep": nested(MAX_DEPTH),
    "too many digits": 10**5000,
}
BINARY = (bytes, bytearray, memoryview)


def as_lists_and_dicts(value: Any) -> Any:
    """What JSON writes a value as: any sequence an array, any mapping an object. Binary
    data is no JSON type (Django decodes bytes into text; JSON has no bytes)."""
    if isinstance(value, (str, *BINARY)):
        return value
    if isinstance(value, Mapping):
        return {key: as_lists_and_dicts(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [as_lists_and_dicts(item) for item in value]
    return value


def unchanged(back: Any, given: Any) -> bool:
    """Whether ``back`` is ``given`` as JSON hands it back: a sequence as a list, a mapping
    as a dict with the same keys, the same text, the same number. Numbers compare by value:
    PostgreSQL gives a whole float back as an integer (docs/tasks.md)."""
    if given is None or isinstance(given, bool):
        return back is given
    if isinstance(given, int | float):
        if not isinstance(back, int | float) or isinstance(back, bool):
            return False
        try:
            return back == given or float(back) == float(given)
        except OverflowError:
            return False
    if isinstance(given, str):
        return isinstance(back, str) and back == given
    if isinstance(given, Mapping):
        return (
            isinstance(back, dict)
            and len(back) == len(given)
            and all(key in back and unchanged(back[key], item) for key, item in given.items())
        )
    if isinstance(given, Sequence) and not isinstance(given, BINARY):
        return (
            isinstance(back, list)
            and len(back) == len(given)
            and all(unchanged(b, g) for b, g in zip(back, given, strict=True))
        )
    return False


def round_trips(args: list[Any]) -> bool:
    """Whether JSON hands ``args`` back unchanged and every supported database stores them
    (the oracle of tests/faults/hostile.py: no NUL, no lone surrogate, 31 levels at most)."""
    plain = as_lists_and_dicts(args)
    try:
        back = json.loads(json.dumps(plain, allow_nan=False))
    except (TypeError, ValueError):
        return False
    return unchanged(back, args) and storable(plain)


def test_the_list_holds_only_what_django_takes_and_both_verdicts() -> None:
    assert all(django_takes(value) for value in DJANGO_TAKES.values())
    verdicts = {round_trips([value]) for value in DJANGO_TAKES.values()}
    assert verdicts == {True, False}


@pytest.mark.django_db
@pytest.mark.parametrize("value", DJANGO_TAKES.values(), ids=DJANGO_TAKES.keys())
def test_taskmill_takes_what_django_takes_exactly_when_it_round_trips(value: Any) -> None:
    if round_trips([value]):
        result = contract_tasks.echo.enqueue(value)
        stored = task_backends["default"].get_result(result.id)  # read from the database
        assert unchanged(stored.args, [value]), (stored.args, value)
        # What Django's own backend would hand the task, taskmill hands it too.
        assert unchanged(stored.args, normalize_json([value]))
        assert stored.kwargs == {}
    else:
        with pytest.raises(TypeError) as caught:
            contract_tasks.echo.enqueue(value)
        message = str(caught.value)
        assert message.startswith(f"Cannot enqueue {contract_tasks.echo.module_path!r}: args[0]")
        assert re.search(r"\. Unsupported type: <class '[\w.]+'>$", message), message
        assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_worker_hands_the_task_what_django_would() -> None:
    taken = {name: value for name, value in DJANGO_TAKES.items() if round_trips([value])}
    results = {
        (name, how): contract_tasks.identity.enqueue(*args, **kwargs)
        for name, value in taken.items()
        for how, (args, kwargs) in (("args", ([value], {})), ("kwargs", ([], {"value": value})))
    }
    run_queued()
    for (name, how), result in results.items():
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, (name, how, result.errors)
        expected = normalize_json(taken[name])
        assert unchanged(result.return_value, expected), (name, how, result.return_value)


# -- a stored run whose task is not registered here -------------------------------------------

UNREGISTERED = [
    "nowhere.missing_task",  # imports nothing
    "tests.testapp.tasks.not_a_task",  # imports, but is a plain function
    "os.system",  # importable, but not in an installed app
]


def _unregistered_run(task_path: str) -> str:
    result = contract_tasks.echo.enqueue("a", key=[1])
    Run.objects.filter(pk=int(result.id)).update(task_path=task_path)
    return result.id


@pytest.mark.django_db
@pytest.mark.parametrize("task_path", UNREGISTERED)
def test_get_result_of_a_run_whose_task_is_not_registered_returns_it(task_path: str) -> None:
    run_id = _unregistered_run(task_path)
    backend = task_backends["default"]

    result = backend.get_result(run_id)
    assert result.id == run_id
    assert result.status == TaskResultStatus.READY
    assert result.args == ["a"] and result.kwargs == {"key": [1]}
    assert result.task.module_path == task_path
    assert task_path in repr(result)
    Run.objects.filter(pk=int(run_id)).update(status="CANCELLED")
    result.refresh()  # through the run's backend alias, which is known
    assert result.status == TaskResultStatus.FAILED
    # The task itself cannot be had: touching it says which path and why.
    with pytest.raises(InvalidTask, match=rf"{re.escape(repr(task_path))} is not registered"):
        _ = result.task.func
    with pytest.raises(InvalidTask, match="is not registered"):
        result.task.enqueue()

    assert async_to_sync(backend.aget_result)(run_id).task.module_path == task_path


@pytest.mark.django_db
@pytest.mark.parametrize("task_path", UNREGISTERED)
def test_a_tasks_get_result_of_such_a_run_is_a_mismatch_naming_the_path(task_path: str) -> None:
    run_id = _unregistered_run(task_path)
    for get_result in (
        contract_tasks.echo.get_result,
        async_to_sync(contract_tasks.echo.aget_result),
    ):
        with pytest.raises(TaskResultMismatch, match=re.escape(repr(task_path))):
            get_result(run_id)


@pytest.mark.django_db(transaction=True)
def test_a_refused_run_of_an_unregistered_task_reads_back_failed(admin_client: Any) -> None:
    """The worker refuses it; its result, the admin and ``taskmill status`` show it."""
    run_id = _unregistered_run("nowhere.missing_task")
    run_queued()
    result = task_backends["default"].get_result(run_id)
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == "taskmill.exceptions.TaskNotRegistered"
    assert "'nowhere.missing_task' is not registered" in result.errors[-1].traceback

    for url in ("/admin/taskmill/run/", f"/admin/taskmill/run/{run_id}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200 and "nowhere.missing_task" in page.content.decode()
    assert admin_client.get("/admin/taskmill/dashboard/").status_code == 200
    out = StringIO()
    call_command("taskmill", "status", stdout=out)
    assert out.getvalue().startswith("taskmill status of database")
