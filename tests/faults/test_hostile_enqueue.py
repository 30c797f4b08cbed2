"""Hostile input at the enqueue door: every argument either is stored and read back equal
(and a real worker hands it back), or is refused with a clear error, writing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskmill.compat import InvalidTask
from taskmill.exceptions import InvalidTaskArguments
from taskmill.models import Run
from taskmill.serialization import MAX_DEPTH
from tests.faults.hostile import (
    ECHO,
    FEW,
    arguments,
    as_json,
    kwarg_names,
    nested,
    runs,
    same_json,
    show,
    storable,
)
from tests.testapp import hostile_tasks

# -- enqueue ------------------------------------------------------------------------------------


@pytest.mark.django_db
@FEW
@given(args=st.lists(arguments, max_size=3), kwargs=st.dictionaries(kwarg_names, arguments))
def test_enqueue_stores_exactly_what_it_was_given_or_refuses_it_clearly(
    args: list[Any], kwargs: dict[str, Any]
) -> None:
    before = runs()
    expected_ok = storable(args) and storable(kwargs)
    try:
        result = hostile_tasks.echo.enqueue(*args, **kwargs)
    except InvalidTaskArguments as exc:
        assert not expected_ok, f"refused what every database stores: {exc}"
        assert str(exc).startswith(f"Cannot enqueue {ECHO!r}: "), str(exc)
        assert "args" in str(exc) or "kwargs" in str(exc), str(exc)
        assert runs() == before, "a refused enqueue wrote a run"
        return
    assert expected_ok, f"accepted what some database cannot store: {show([args, kwargs])}"
    assert runs() == before + 1
    row = Run.objects.get(pk=int(result.id))  # read back from the database
    assert same_json(row.args, as_json(args)), show([row.args, args])
    assert same_json(row.kwargs, as_json(kwargs)), show([row.kwargs, kwargs])


@pytest.mark.django_db
@FEW
@given(calls=st.lists(st.tuples(st.lists(arguments, max_size=2), st.just({})), max_size=4))
def test_bulk_enqueue_is_all_or_nothing(calls: list[tuple[list[Any], dict[str, Any]]]) -> None:
    before = runs()
    try:
        hostile_tasks.echo.enqueue_many(calls)
    except InvalidTaskArguments as exc:
        assert not all(storable(args) for args, _ in calls), str(exc)
        assert runs() == before, "a refused bulk enqueue wrote some runs"
        return
    assert all(storable(args) for args, _ in calls)
    assert runs() == before + len(calls)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "words"),
    [
        # The test settings list the queues: an unknown name is refused before its text.
        ({"queue_name": "q\x00"}, "NUL character|not valid"),
        ({"unique_key": "key\x00"}, "NUL character"),
        ({"unique_key": "\udc00"}, "lone surrogate"),
        ({"queue_name": "x" * 100}, "longer than|not valid"),
        ({"priority": 10**6}, "priority"),
        ({"run_after": "tomorrow"}, "run_after"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"result_ttl": float("inf")}, "result_ttl"),
    ],
)
def test_enqueue_options_that_cannot_be_stored_are_refused_clearly(
    options: dict[str, Any], words: str
) -> None:
    before = runs()
    with pytest.raises(InvalidTask, match=words):
        hostile_tasks.echo.using(**options).enqueue()
    assert runs() == before


STRANGE_BUT_VALID: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((10**300, -(2**200), 2**63, -(2**63) - 1), {"big": 10**4299}),
    ((0.1, -0.0, 5e-324, 1.7976931348623157e308, 1e16, -1e-300), {"f": 123456789.125}),
    (("", " ", "\U0001f600", "\u2028\u2029", "\ufeff", "\\u0000", "\u202eRTL", "e\u0301"), {}),
    (((1, (2, (3,))),), {"tuple": (None, True, False)}),
    ((nested(MAX_DEPTH - 2),), {}),
    (({"": "", "a.b": {"$ref": "#"}, "with space": [], "\U0001f600": {}},), {}),
    ((), {"é": 1, "π": 3.14, "x" * 200: "long name", "if": "keyword", "self": None}),
    (([None] * 500, "z" * 100_000), {}),
]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_strange_but_valid_arguments_and_returns_them(
    run_worker: Callable[..., Any],
) -> None:
    results = [hostile_tasks.echo.enqueue(*args, **kwargs) for args, kwargs in STRANGE_BUT_VALID]

    run_worker("--burst", "--no-scheduler", timeout=90)

    for result, (args, kwargs) in zip(results, STRANGE_BUT_VALID, strict=True):
        result.refresh()
        row = Run.objects.get(pk=int(result.id))
        assert row.status == "SUCCESSFUL", (args, row.errors)
        assert same_json(row.return_value, [as_json(args), as_json(kwargs)]), (
            row.return_value,
            args,
            kwargs,
        )


@pytest.mark.django_db(transaction=True)
def test_return_values_that_cannot_be_stored_fail_the_run_clearly(
    run_worker: Callable[..., Any],
) -> None:
    """What a task returns is checked like what it is given: a value some database cannot
    store fails the run with a clear error (never a write the database refuses, which
    would leave the worker retrying the flush)."""
    kinds = ["NUL character", "lone surrogate", "nested"]
    results = {kind: hostile_tasks.hostile_return.enqueue(kind) for kind in kinds}
    after = hostile_tasks.echo.enqueue("after")

    run_worker("--burst", "--no-scheduler", timeout=90)

    for name, result in results.items():
        row = Run.objects.get(pk=int(result.id))
        assert row.status == "FAILED", (name, row.status, row.return_value)
        assert row.errors[-1]["exception_class_path"] == "builtins.TypeError", row.errors
        assert "returned what JSON cannot hold" in row.errors[-1]["traceback"], row.errors
    assert Run.objects.get(pk=int(after.id)).status == "SUCCESSFUL"


@pytest.mark.django_db(transaction=True)
def test_error_messages_that_cannot_be_stored_as_they_are_still_fail_the_run(
    run_worker: Callable[..., Any],
) -> None:
    """A task's exception message is not the task author's to clean: a NUL character or a
    lone surrogate in it must not make the outcome's write fail (the worker would retry the
    write for ever). The run fails, its error readable, the character shown escaped."""
    kinds = {"NUL character": "a\\x00b", "lone surrogate": "\\udc00"}
    results = {kind: hostile_tasks.raise_hostile.enqueue(kind) for kind in kinds}
    after = hostile_tasks.echo.enqueue("after")

    run_worker("--burst", "--no-scheduler", timeout=90)

    for kind, shown in kinds.items():
        row = Run.objects.get(pk=int(results[kind].id))
        assert row.status == "FAILED", (kind, row.status)
        assert f"ValueError: bad input {shown}" in row.errors[-1]["traceback"], row.errors
    assert Run.objects.get(pk=int(after.id)).status == "SUCCESSFUL"
