"""JSON in, JSON out: arguments and return values are stored as JSON and nothing else.

"JSON" means what every supported database stores and gives back unchanged, which is less
than what ``json.dumps`` writes: PostgreSQL's jsonb refuses the NUL character and lone
surrogates (``"\\u0000"``, ``"\\udc00"``), MariaDB's JSON_VALID refuses lone surrogates and
documents nested more than 31 levels deep, and Python will not turn an integer of more than
4,300 digits into text. Such values are refused at the door with a message that names them,
on every database alike, instead of failing deep inside one database's driver.

It is also less than what Django's own backends take (``normalize_json``): they decode
bytes into text and keep NaN and non-string dict keys, which a task would not get back as
given or a database refuses (docs/tasks.md has the list, and why). What Django takes and
JSON gives back unchanged (any sequence as a list, any mapping as a dict) is taken here
too. Every refusal is a ``TypeError`` whose message ends with Django's own words,
``Unsupported type: <class '...'>``, so code that matches Django's message still matches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .exceptions import InvalidTaskArguments

_NOT_JSON = object()

# The deepest nesting stored: a list or object counts one level, a scalar none. MariaDB's
# JSON_VALID (its JSON columns' CHECK constraint) refuses 32 levels.
MAX_DEPTH = 31


# Binary data is a sequence to Django, which decodes bytes into text and makes a bytearray a
# list of numbers: the task would receive something else than it was given.
BINARY = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a value cannot be stored: ``what`` for a human, ``offender`` the class of the
    part that cannot (named in Django's words at the end of the message)."""

    what: str
    offender: type

    def message(self, context: str) -> str:
        return (
            f"{context}: {self.what}. taskmill stores only JSON (no pickle). "
            f"Unsupported type: {self.offender}"
        )


def _shown(value: Any) -> str:
    """``repr(value)``, shortened; an integer too long for text makes repr() raise."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__qualname__} too long to show>"
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_path(path: str, value: Any) -> Problem:
    kind = type(value)
    return Problem(f"{path} is a {kind.__module__}.{kind.__qualname__}", kind)


def text_problem(path: str, text: str) -> str | None:
    """Why a database cannot store ``text`` (named ``path`` in the message), or None.

    For any text column too, not only JSON: PostgreSQL refuses NUL in every text value.
    """
    if "\x00" in text:
        return f"{path} contains a NUL character ('\\x00'), which PostgreSQL cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"{path} is not valid Unicode: it holds a lone surrogate "
            f"({text[exc.start : exc.end]!r}) at index {exc.start}"
        )
    return None


def _int_problem(path: str, value: int) -> str | None:
    try:
        str(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return f"{path} is an integer too large to write as text ({value.bit_length()} bits)"
    return None


def _find_non_json(value: Any, path: str, depth: int = 0) -> Problem | None:
    """The first place in ``value`` that JSON cannot hold, described for a human."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        problem = text_problem(path, value)
        return Problem(problem, type(value)) if problem else None
    if isinstance(value, int):
        problem = _int_problem(path, value)
        return Problem(problem, type(value)) if problem else None
    if isinstance(value, float):
        if value == value and value not in (float("inf"), float("-inf")):
            return None
        return Problem(f"{path} is {value!r}, which JSON cannot represent", type(value))
    if isinstance(value, BINARY):
        kind = type(value).__qualname__
        return Problem(
            f"{path} is binary data ({kind}); pass text, or encode it (base64) yourself",
            type(value),
        )
    if isinstance(value, Mapping | Sequence) and depth >= MAX_DEPTH:
        # Stopping here also ends the walk of a value that contains itself.
        return Problem(
            f"{path} is nested more than {MAX_DEPTH} levels deep (or contains itself); "
            "MariaDB cannot store deeper JSON",
            type(value),
        )
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                return Problem(
                    f"{path} has the key {_shown(key)}, but JSON object keys must be strings "
                    "(the task would not get this key back)",
                    type(key),
                )
            problem = text_problem(f"{path} key {key!r}", key)
            if problem:
                return Problem(problem, type(key))
        return _find_in_items(value.items(), path, depth)
    if isinstance(value, Sequence):  # a tuple, a range, a deque...: stored as a list
        return _find_in_items(enumerate(value), path, depth)
    return _describe_path(path, value)


def _find_in_items(items: Any, path: str, depth: int) -> Problem | None:
    for key, item in items:
        found = _find_non_json(item, f"{path}[{key!r}]", depth + 1)
        if found:
            return found
    return None


def _as_lists_and_dicts(value: Any) -> Any:
    """A value the walk accepted, with every sequence a list and every mapping a dict, as
    ``json.dumps`` wants them (it takes only lists, tuples and dicts)."""
    if isinstance(value, str | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {key: _as_lists_and_dicts(item) for key, item in value.items()}
    return [_as_lists_and_dicts(item) for item in value]


def _plainly_storable(text: str) -> bool:
    """Whether ``json.dumps``'s text surely holds nothing a database refuses. Cheap (C
    speed); a False only means "look closer": the careful walk decides."""
    return (
        "\\u0000" not in text
        and "\\ud" not in text  # surrogates; a valid pair (an emoji) takes the walk too
        and text.count("[") + text.count("{") <= MAX_DEPTH
    )


def to_json_value(
    value: Any, path: str, context: str, *, raises: type[TypeError] = InvalidTaskArguments
) -> Any:
    """Return ``value`` as plain JSON types (sequences become lists) or raise a clear error.

    ``path`` names the value in the message (``args[0]``), ``context`` says what was being
    done (``Cannot enqueue 'app.tasks.send'``). ``raises`` is the error's class: a plain
    ``TypeError`` for a return value, as Django's own backends record it.
    """
    if value is None or value is True or value is False:  # most tasks return None
        return value
    if not value and type(value) in (list, dict):  # no arguments: a fresh empty one
        return type(value)()
    # Fast path, all in C: plain lists, dicts, strings and numbers survive a round trip
    # unchanged. Anything else (tuples, odd keys, objects, NaN, NUL characters, deep
    # nesting) takes the careful walk, which accepts any sequence as a list and any
    # mapping as a dict and names the first thing the databases cannot hold.
    try:
        text = json.dumps(value, allow_nan=False)
        loaded = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        text, loaded = "", _NOT_JSON
    if loaded is not _NOT_JSON and loaded == value and _plainly_storable(text):
        return loaded
    problem = _find_non_json(value, path)
    if problem:
        raise raises(problem.message(context))
    if loaded is _NOT_JSON:  # a mapping or sequence json.dumps does not know (a deque...)
        loaded = json.loads(json.dumps(_as_lists_and_dicts(value), allow_nan=False))
    return loaded


def normalize_arguments(task_path: str, args: Any, kwargs: Any) -> tuple[list, dict]:
    if type(args) in (tuple, list) and not args and type(kwargs) is dict and not kwargs:
        return [], {}  # no arguments, the commonest call of a bulk enqueue: nothing to check
    context = f"Cannot enqueue {task_path!r}"
    return (
        to_json_value(list(args), "args", context),
        to_json_value(dict(kwargs), "kwargs", context),
    )
