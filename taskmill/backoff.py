"""The two forms of a ``backoff`` callable, told apart once, from its signature.

Django's proposal for retries (django/new-features#142) spells a backoff
``backoff(exception, task_result) -> seconds | None``. taskmill's first form was
``backoff(failures, exception)``: it keeps working for one release, with a
``DeprecationWarning``. Both take two positional arguments, so nothing at call time can
tell them apart (a wrong guess would hand an int to code expecting an exception and fail
every retry); the signature is read instead, when the task is defined:

1. It must accept two positional arguments. ``inspect.signature`` sees through
   ``functools.partial`` (its bound arguments are gone), bound methods (``self`` is gone),
   callable objects (their ``__call__``) and ``functools.wraps``.
2. Annotations decide first: the first parameter annotated ``int`` is the old form; annotated
   an exception class, or the second annotated ``TaskResult``, is the new one.
3. Then names: a first parameter named like an exception (``exception``, ``exc``, ``e``,
   ``error``, ``err``, ``ex``) or a second named ``task_result``/``result`` is the new form;
   a first named like a count (``failures``, ``attempt``, ``attempts``, ``n``...) or a second
   named like an exception is the old one. The first parameter is read before the second.
4. Nothing said (``lambda a, b: 30``, ``*args``): the old form, since that is what code
   written before the proposal is, with a warning that says how to name it. The backend's
   ``OPTIONS["BACKOFF"]`` is new and has no old code to keep: there, undecided is the new form.

A callable is read once: the answer is remembered, so the warning comes once, when the task
is defined (or, for a backoff set some other way, at its first use).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

# What the proposal (and every new backoff) receives, and what the old form received.
NEW_FORM = "backoff(exception, task_result) -> seconds | None"
OLD_FORM = "backoff(failures, exception)"
PROPOSAL_URL = "https://github.com/django/new-features/issues/142"

EXCEPTION_NAMES = frozenset({"exception", "exc", "e", "error", "err", "ex"})
RESULT_NAMES = frozenset({"task_result", "result"})
COUNT_NAMES = frozenset(
    {"failures", "failure", "failed", "attempt", "attempts", "n", "retries", "tries", "count"}
)

# id(callable) -> (callable, takes_result). The callable is kept so its id is never reused.
_known: dict[int, tuple[Callable[..., Any], bool]] = {}
_known_lock = threading.Lock()


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(next(iter(spec.submodule_search_locations)), "")


# Frames the warning skips, to land on the user's line that defined the task: taskmill's,
# the tasks framework's, and dataclasses' generated __init__ (file name "<string>").
_SKIPPED = (
    *(path for name in ("taskmill", "django", "django_tasks") if (path := _package_dir(name))),
    "<",
)


def describe(backoff: Callable[..., Any]) -> str:
    name = getattr(backoff, "__qualname__", None) or getattr(backoff, "__name__", None)
    if name is None and hasattr(backoff, "func"):  # functools.partial
        return f"partial({describe(backoff.func)})"
    return name or repr(backoff)


def _annotation_says(annotation: Any, position: int) -> bool | None:
    """What one parameter's annotation says: True new form, False old, None nothing."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, type):
        is_count = annotation is int
        is_exception = issubclass(annotation, BaseException)
        is_result = annotation.__name__ == "TaskResult"
    else:  # a string (postponed annotations) or a typing construct: read its names
        names = {
            part.split("[", 1)[0].rsplit(".", 1)[-1]
            for part in str(annotation).replace(" ", "").split("|")
        } - {"None", "Optional"}
        is_count = names == {"int"}
        is_exception = any(name.endswith(("Exception", "Error")) for name in names)
        is_result = "TaskResult" in names
    if position == 0:
        return True if is_exception else False if is_count else None
    return True if is_result else False if is_exception else None


def _name_says(name: str, position: int) -> bool | None:
    if position == 0:
        return True if name in EXCEPTION_NAMES else False if name in COUNT_NAMES else None
    return True if name in RESULT_NAMES else False if name in EXCEPTION_NAMES else None


def read_form(backoff: Callable[..., Any]) -> bool | None:
    """Whether ``backoff`` takes ``(exception, task_result)`` (True), ``(failures,
    exception)`` (False), or its signature does not say (None).

    Raises ``TypeError`` when it cannot be called with two positional arguments.
    """
    if not callable(backoff):
        raise TypeError(f"{describe(backoff)} is not callable")
    try:
        signature = inspect.signature(backoff)
    except (TypeError, ValueError):  # some builtins have none: nothing to read
        return None
    try:
        signature.bind(None, None)
    except TypeError:
        raise TypeError(
            f"{describe(backoff)}{signature} cannot take two positional arguments"
        ) from None
    positional = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind
        in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ][:2]
    for says in (_annotation_says, _name_says):
        for position, parameter in enumerate(positional):
            value = parameter.annotation if says is _annotation_says else parameter.name
            verdict = says(value, position)
            if verdict is not None:
                return verdict
    return None


def takes_result(backoff: Callable[..., Any]) -> bool:
    """Whether a task's ``backoff`` is the proposal's form; remembered per callable.

    The old form (or an undecided one) warns, once per callable. Raises ``TypeError`` for a
    callable that takes neither.
    """
    known = _known.get(id(backoff))
    if known is not None and known[0] is backoff:
        return known[1]
    form = read_form(backoff)
    new = bool(form)
    with _known_lock:
        first = _known.get(id(backoff), (None, None))[0] is not backoff
        _known[id(backoff)] = (backoff, new)
    if first and not new:
        how = (
            "takes"
            if form is False
            else "does not say by its signature which form it takes, so it is called in"
        )
        warnings.warn(
            f"The backoff {describe(backoff)} {how} taskmill's deprecated form "
            f"{OLD_FORM}, which the next release removes. Write it in the form Django "
            f"proposes, {NEW_FORM} ({PROPOSAL_URL}), naming its parameters (exception, "
            "task_result); taskmill.retries.failed_attempts(task_result) counts the failures.",
            DeprecationWarning,
            skip_file_prefixes=_SKIPPED,
        )
    return new
