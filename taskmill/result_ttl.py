"""How long a finished run is kept: ``result_ttl`` (a task's, or one call's) and the
``TASKMILL_RESULT_TTL`` setting, each one duration for every outcome or one per outcome.

One duration: seconds (an int or a float) or a ``timedelta``; None keeps the run. Per
outcome: a dict from the final statuses' names (the ``RunStatus`` names SUCCESSFUL, FAILED
and CANCELLED, as strings or members) to such durations, so failures can be kept longer than
successes. An outcome the dict leaves out is kept: a missing key is not read as "use the
setting", which would make a run's fate depend on two places at once.

What is given is checked where it is given (the task's definition, ``.using()``, Django's
system checks for the setting) and normalised once: seconds as floats, a dict as the
read-only, hashable ``TTLByOutcome`` (a ``Task`` is a frozen dataclass, hashed by its
fields). A run stores its call's value as JSON, checked again when a worker claims the run
(``db/records.py``), since a row may hold what taskmill never wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

from .status import FINISHED_STATUSES, RunStatus

OUTCOMES: tuple[str, ...] = tuple(str(status) for status in FINISHED_STATUSES)
SUCCESSFUL, FAILED = str(RunStatus.SUCCESSFUL), str(RunStatus.FAILED)
SETTING = "TASKMILL_RESULT_TTL"


class TTLByOutcome(Mapping[str, float | None]):
    """A time-to-live per outcome: outcome name -> seconds, or None to keep such runs."""

    __slots__ = ("_seconds",)

    def __init__(self, seconds: Mapping[str, float | None]) -> None:
        self._seconds = dict(seconds)

    def __getitem__(self, outcome: str) -> float | None:
        return self._seconds[outcome]

    def __iter__(self) -> Iterator[str]:
        return iter(self._seconds)

    def __len__(self) -> int:
        return len(self._seconds)

    def __hash__(self) -> int:
        return hash(frozenset(self._seconds.items()))

    def __repr__(self) -> str:
        return f"TTLByOutcome({self._seconds!r})"

    def as_json(self) -> dict[str, float | None]:
        return dict(self._seconds)


TTL = float | TTLByOutcome | None


def _seconds(value: Any) -> float | None:
    """Seconds from a number or a timedelta; None if it is neither, or negative, or not
    finite (JSON, where a call's value is stored, holds neither NaN nor infinity)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def parse(value: Any, name: str = "result_ttl") -> TTL:
    """``value`` normalised (see the module's docstring); ``ValueError`` saying what is
    wrong. ``name`` is how the caller spells it in the message."""
    if value is None or isinstance(value, TTLByOutcome):
        return value
    if isinstance(value, Mapping):
        per_outcome: dict[str, float | None] = {}
        for key, duration in value.items():
            outcome = str(key) if isinstance(key, str) else None
            if outcome not in OUTCOMES:
                raise ValueError(
                    f"{name} per outcome takes the outcomes {', '.join(OUTCOMES)} as keys "
                    f"(RunStatus names), not {key!r}."
                )
            if duration is not None:
                seconds = _seconds(duration)
                if seconds is None:
                    raise ValueError(
                        f"{name}[{outcome!r}] must be seconds >= 0, a timedelta or None "
                        f"(keep), not {duration!r}."
                    )
                duration = seconds
            per_outcome[outcome] = duration
        return TTLByOutcome(per_outcome)
    seconds = _seconds(value)
    if seconds is None:
        raise ValueError(
            f"{name} must be seconds >= 0 or a timedelta, not {_shown(value)} (or a dict "
            f"of them by outcome: {', '.join(OUTCOMES)})."
        )
    return seconds


def _shown(value: Any) -> str:
    if isinstance(value, timedelta):
        return repr(value.total_seconds())
    return repr(value)


def as_stored(ttl: TTL) -> Any:
    """The JSON a run stores for its call's ``result_ttl``."""
    return ttl.as_json() if isinstance(ttl, TTLByOutcome) else ttl


def stored_is_valid(value: Any) -> bool:
    """Whether a run's stored ``result_ttl`` is what ``as_stored`` writes."""
    if value is None or _seconds(value) is not None:
        return True
    return isinstance(value, dict) and all(
        key in OUTCOMES and (duration is None or _seconds(duration) is not None)
        for key, duration in value.items()
    )


def seconds_for(ttl: Any, status: str) -> float | None:
    """How long a run that ended ``status`` is kept under ``ttl`` (normalised, or as a run
    stores it); None: kept."""
    if isinstance(ttl, Mapping):
        return ttl.get(str(status))
    return ttl


# -- the setting -------------------------------------------------------------------------------

_parsed_setting: tuple[Any, TTL] = (None, None)


def setting_ttl(raw: Any) -> TTL:
    """``TASKMILL_RESULT_TTL`` normalised, remembered for as long as the setting holds the
    same object (it is read for every outcome a worker writes). An invalid value keeps
    runs: Django's system check (``taskmill.E007``) stops the worker from starting with it,
    and a finish must never fail over it."""
    global _parsed_setting
    cached_raw, cached = _parsed_setting
    if raw is cached_raw:
        return cached
    try:
        parsed = parse(raw, SETTING)
    except ValueError:
        parsed = None
    _parsed_setting = (raw, parsed)
    return parsed


def check_setting(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """The system check of ``TASKMILL_RESULT_TTL``: a bad key or duration is said at start-up
    (``manage.py check``, a worker, runserver), not discovered at a run's finish."""
    from django.core import checks

    from .conf import setting

    try:
        parse(setting(SETTING), SETTING)
    except ValueError as exc:
        return [
            checks.Error(
                str(exc),
                hint=f"For example {{{SUCCESSFUL!r}: timedelta(days=1), {FAILED!r}: "
                "timedelta(days=30)}: a missing outcome is kept.",
                id="taskmill.E007",
            )
        ]
    return []


__all__ = [
    "OUTCOMES",
    "TTLByOutcome",
    "as_stored",
    "check_setting",
    "parse",
    "seconds_for",
    "setting_ttl",
    "stored_is_valid",
]
