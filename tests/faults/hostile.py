"""What the hostile-input tests share: the hypothesis settings, an oracle of what the
databases can store (written apart from taskmill's own check), and the strategies."""

from __future__ import annotations

import decimal
import math
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from taskmill.models import Run
from taskmill.serialization import MAX_DEPTH
from tests.testapp import hostile_tasks

ECHO = hostile_tasks.echo.module_path
# Modest by default (the file runs in seconds); TASKMILL_HYPOTHESIS_EXAMPLES=1000 digs deeper.
FEW = settings(
    max_examples=int(os.environ.get("TASKMILL_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- what the databases store: an oracle written apart from taskmill's own check -------------


def storable_text(text: str) -> bool:
    # PostgreSQL's jsonb refuses NUL; PostgreSQL and MariaDB refuse lone surrogates.
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


def storable(value: Any, depth: int = 0) -> bool:
    """Whether every supported database stores ``value`` (depth: its container's levels)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < 10**4300  # Python writes at most 4,300 digits as text
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list | tuple):
        return depth < MAX_DEPTH and all(storable(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return depth < MAX_DEPTH and all(
            isinstance(key, str) and storable_text(key) and storable(item, depth + 1)
            for key, item in value.items()
        )
    return False


def show(value: Any) -> str:
    """repr() for a failure message; an integer too long for text makes repr() raise."""
    try:
        return repr(value)[:500]
    except ValueError:
        return f"<{type(value).__name__} too long to show>"


def as_json(value: Any) -> Any:
    """What a storable value reads back as: tuples are lists."""
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


def same_json(stored: Any, expected: Any) -> bool:
    """Equal as JSON. Numbers compare by value: PostgreSQL's jsonb keeps numbers as decimals
    and gives a whole float back as an integer (1e16 -> 10000000000000000)."""
    numbers = (int, float)
    if isinstance(expected, numbers) and not isinstance(expected, bool):
        if not isinstance(stored, numbers) or isinstance(stored, bool):
            return False
        if stored == expected:
            return True
        try:
            return float(stored) == float(expected)
        except OverflowError:
            return False
    if isinstance(expected, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(expected)
            and all(same_json(a, b) for a, b in zip(stored, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(stored, dict)
            and stored.keys() == expected.keys()
            and all(same_json(stored[key], expected[key]) for key in expected)
        )
    return type(stored) is type(expected) and stored == expected


def nested(depth: int) -> list[Any]:
    """A list ``depth`` levels deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# -- strategies -------------------------------------------------------------------------------

# Every code point, surrogates and NUL included (the default alphabet leaves surrogates out).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
tricky_text = st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "x\udfff", "\U0001f600", "\\u0000", "\u2028", "\ufeff", "'\""]
)
texts = st.one_of(any_text, tricky_text)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**63, -(2**63) - 1, 10**300, 10**4299]),
    # Built, not listed: hypothesis cannot repr an int of more than 4,300 digits.
    st.sampled_from([4300, 5000]).map(lambda digits: -(10**digits)),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
not_json = st.one_of(
    st.binary(max_size=4),
    st.sets(st.integers(), max_size=2),
    st.datetimes(),
    st.dates(),
    st.just(object()),
    st.just(1j),
    st.just(decimal.Decimal("1.5")),
)
odd_keys = st.one_of(texts, st.integers(), st.none(), st.tuples(st.integers()), st.booleans())
values = st.recursive(
    st.one_of(json_leaves, not_json),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(odd_keys, children, max_size=3),
    ),
    max_leaves=8,
)
deep = st.integers(min_value=MAX_DEPTH - 2, max_value=MAX_DEPTH + 2).map(nested)
arguments = st.one_of(values, deep)
# Keyword names are strings by Python's rules; "self" too (Django's enqueue took it by name).
kwarg_names = st.one_of(texts, st.just("self"))


def runs() -> int:
    return Run.objects.count()
