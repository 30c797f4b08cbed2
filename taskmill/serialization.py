"""JSON in, JSON out: arguments and return values are stored as JSON and nothing else.

"JSON" means what every supported database stores and gives back unchanged, which is less
than what ``json.dumps`` writes: PostgreSQL's jsonb refuses the NUL character and lone
surrogates (``"\\u0000"``, ``"\\udc00"``), MariaDB's JSON_VALID refuses lone surrogates and
documents nested more than 31 levels deep, and Python will not turn an integer of more than
4,300 digits into text. Such values are refused at the door with a message that names them,
on every database alike, instead of failing deep inside one database's driver.
"""

from __future__ import annotations

import json
from typing import Any

from .exceptions import InvalidTaskArguments

_NOT_JSON = object()

# The deepest nesting stored: a list or object counts one level, a scalar none. MariaDB's
# JSON_VALID (its JSON columns' CHECK constraint) refuses 32 levels.
MAX_DEPTH = 31


def _describe_path(path: str, value: Any) -> str:
    return f"{path} is a {type(value).__module__}.{type(value).__qualname__}"


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


def _find_non_json(value: Any, path: str, depth: int = 0) -> str | None:
    """The first place in ``value`` that JSON cannot hold, described for a human."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return text_problem(path, value)
    if isinstance(value, int):
        return _int_problem(path, value)
    if isinstance(value, float):
        return (
            None
            if value == value and value not in (float("inf"), float("-inf"))
            else (f"{path} is {value!r}, which JSON cannot represent")
        )
    if isinstance(value, list | tuple | dict) and depth >= MAX_DEPTH:
        # Stopping here also ends the walk of a value that contains itself.
        return (
            f"{path} is nested more than {MAX_DEPTH} levels deep (or contains itself); "
            "MariaDB cannot store deeper JSON"
        )
    if isinstance(value, list | tuple):
        return _find_in_items(enumerate(value), path, depth)
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                return f"{path} has the key {key!r}, but JSON object keys must be strings"
            problem = text_problem(f"{path} key {key!r}", key)
            if problem:
                return problem
        return _find_in_items(value.items(), path, depth)
    return _describe_path(path, value)


def _find_in_items(items: Any, path: str, depth: int) -> str | None:
    for key, item in items:
        found = _find_non_json(item, f"{path}[{key!r}]", depth + 1)
        if found:
            return found
    return None


def _plainly_storable(text: str) -> bool:
    """Whether ``json.dumps``'s text surely holds nothing a database refuses. Cheap (C
    speed); a False only means "look closer": the careful walk decides."""
    return (
        "\\u0000" not in text
        and "\\ud" not in text  # surrogates; a valid pair (an emoji) takes the walk too
        and text.count("[") + text.count("{") <= MAX_DEPTH
    )


def to_json_value(value: Any, path: str, context: str) -> Any:
    """Return ``value`` as plain JSON types (tuples become lists) or raise a clear error.

    ``path`` names the value in the message (``args[0]``), ``context`` says what was being
    done (``Cannot enqueue 'app.tasks.send'``).
    """
    if value is None or value is True or value is False:  # most tasks return None
        return value
    if not value and type(value) in (list, dict):  # no arguments: a fresh empty one
        return type(value)()
    # Fast path, all in C: plain lists, dicts, strings and numbers survive a round trip
    # unchanged. Anything else (tuples, odd keys, objects, NaN, NUL characters, deep
    # nesting) takes the careful walk, which accepts tuples as lists and names the first
    # thing the databases cannot hold.
    try:
        text = json.dumps(value, allow_nan=False)
        loaded = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        text, loaded = "", _NOT_JSON
    if loaded is not _NOT_JSON and loaded == value and _plainly_storable(text):
        return loaded
    problem = _find_non_json(value, path)
    if problem:
        raise InvalidTaskArguments(f"{context}: {problem}. taskmill stores only JSON (no pickle).")
    if loaded is _NOT_JSON:  # cannot happen if the walk is complete; never store a sentinel
        raise InvalidTaskArguments(f"{context}: {path} cannot be stored as JSON.")
    return loaded


def normalize_arguments(task_path: str, args: Any, kwargs: Any) -> tuple[list, dict]:
    if type(args) in (tuple, list) and not args and type(kwargs) is dict and not kwargs:
        return [], {}  # no arguments, the commonest call of a bulk enqueue: nothing to check
    context = f"Cannot enqueue {task_path!r}"
    return (
        to_json_value(list(args), "args", context),
        to_json_value(dict(kwargs), "kwargs", context),
    )
