"""JSON in, JSON out: arguments and return values are stored as JSON and nothing else."""

from __future__ import annotations

import json
from typing import Any

from .exceptions import InvalidTaskArguments

_NOT_JSON = object()


def _describe_path(path: str, value: Any) -> str:
    return f"{path} is a {type(value).__module__}.{type(value).__qualname__}"


def _find_non_json(value: Any, path: str) -> str | None:
    """The first place in ``value`` that JSON cannot hold, described for a human."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return (
            None
            if value == value and value not in (float("inf"), float("-inf"))
            else (f"{path} is {value!r}, which JSON cannot represent")
        )
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_non_json(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}, but JSON object keys must be strings"
            found = _find_non_json(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    return _describe_path(path, value)


def to_json_value(value: Any, path: str, context: str) -> Any:
    """Return ``value`` as plain JSON types (tuples become lists) or raise a clear error.

    ``path`` names the value in the message (``args[0]``), ``context`` says what was being
    done (``Cannot enqueue 'app.tasks.send'``).
    """
    # Fast path, all in C: plain lists, dicts, strings and numbers survive a round trip
    # unchanged. Anything else (tuples, odd keys, objects, NaN) takes the careful walk,
    # which accepts tuples as lists and names the first thing JSON cannot hold.
    try:
        loaded = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        loaded = _NOT_JSON
    if loaded is not _NOT_JSON and loaded == value:
        return loaded
    problem = _find_non_json(value, path)
    if problem:
        raise InvalidTaskArguments(f"{context}: {problem}. taskmill stores only JSON (no pickle).")
    return loaded


def normalize_arguments(task_path: str, args: Any, kwargs: Any) -> tuple[list, dict]:
    context = f"Cannot enqueue {task_path!r}"
    return (
        to_json_value(list(args), "args", context),
        to_json_value(dict(kwargs), "kwargs", context),
    )
