"""Which keys a run's limits count under, worked out at enqueue from the task's options.

``concurrency_key``, ``rate_key`` and ``fair_key`` each name a keyword argument, or are a
callable ``(args, kwargs) -> str``; ``.using(concurrency_key="acct-7")`` gives the key of one
call. A run's columns hold the keys as the ``Limit`` rows name them, less their kind: a
task's concurrency and rate keys start with its path (a limit holds per task, and per key
within it), a fair key is the value itself (fairness is within the run's queue).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..compat import InvalidTask
from .rates import parse_rate

KEY_OPTIONS = ("concurrency_key", "rate_key", "fair_key")
# Run.concurrency_key and the others, and Limit.key, hold at most this many characters.
MAX_KEY_LENGTH = 255
KeySpec = str | Callable[[Sequence[Any], Mapping[str, Any]], Any] | None


def check_options(task: Any) -> dict[str, Any]:
    """Validate a task's flow-control options; return the normalized ones to set."""
    limit = task.concurrency_limit
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidTask(f"concurrency_limit must be an integer >= 1, not {limit!r}.")
    rate = parse_rate(task.rate_limit)
    for name in KEY_OPTIONS:
        spec = getattr(task, name)
        if spec is not None and not (callable(spec) or (isinstance(spec, str) and spec)):
            raise InvalidTask(
                f"{name} takes the name of a keyword argument or a callable "
                f"(args, kwargs) -> str, not {spec!r}."
            )
    if task.concurrency_key is not None and limit is None:
        raise InvalidTask("concurrency_key needs concurrency_limit: the limit each key has.")
    if task.rate_key is not None and rate is None:
        raise InvalidTask("rate_key needs rate_limit: the rate each key has.")
    for name, value in task.call_keys:
        if name not in KEY_OPTIONS or not isinstance(value, str) or not value:
            raise InvalidTask(f"{name} given per call must be a non-empty string, not {value!r}.")
    return {"rate_limit": rate}


def given_per_call(options: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Take the keys given to ``.using()`` out of ``options`` (they are values, where the
    task's options of the same names say where to find them)."""
    given = []
    for name in KEY_OPTIONS:
        if name in options:
            value = options.pop(name)
            if not isinstance(value, str) or not value:
                raise InvalidTask(f"using({name}=...) takes a non-empty string, not {value!r}.")
            given.append((name, value))
    return tuple(given)


def uses_keys(task: Any) -> bool:
    return (
        task.concurrency_limit is not None
        or task.rate_limit is not None
        or task.fair_key is not None
        or any(name == "fair_key" for name, _ in task.call_keys)
    )


def declared_limits(task: Any, kind: str) -> dict[str, object]:
    """The limits a task's code declares for its ``kind`` key ({} if the task is unknown)."""
    if task is None:
        return {}
    if kind == "concurrency":
        return {
            "concurrency_limit": task.concurrency_limit,
            "rate_count": None,
            "rate_seconds": None,
        }
    rate = task.rate_limit
    return {
        "concurrency_limit": None,
        "rate_count": rate.count if rate else None,
        "rate_seconds": rate.seconds if rate else None,
    }


def run_keys(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, str]:
    """The run's key columns (only those set) for one call of ``task``."""
    given = dict(task.call_keys)
    path = task.module_path
    columns = {}
    if task.concurrency_limit is not None:
        columns["concurrency_key"] = _scoped(
            path, _key(task, "concurrency_key", given, args, kwargs)
        )
    if task.rate_limit is not None:
        columns["rate_key"] = _scoped(path, _key(task, "rate_key", given, args, kwargs))
    fair = _key(task, "fair_key", given, args, kwargs)
    if fair is not None:
        columns["fair_key"] = fair
    for name, value in columns.items():
        if len(value) > MAX_KEY_LENGTH - len("concurrency:"):
            raise InvalidTask(f"The {name} of {path} is too long: {value[:60]!r}...")
    return columns


def _key(
    task: Any,
    name: str,
    given: dict[str, str],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> str | None:
    if name in given:
        return given[name]
    spec: KeySpec = getattr(task, name)
    if spec is None:
        return None
    if callable(spec):
        value = spec(args, kwargs)
        return None if value is None else str(value)
    if spec not in kwargs:
        raise InvalidTask(
            f"{name} of {task.module_path} is the keyword argument {spec!r}, which this call "
            f"does not pass; pass it by name, or give the key with .using({name}=...)."
        )
    return str(kwargs[spec])


def _scoped(path: str, key: str | None) -> str:
    return path if key is None else f"{path}:{key}"
