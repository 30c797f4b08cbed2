"""A rate limit's spelling: ``"100/m"`` (Celery's: N per second, minute, hour or day) or
``Rate(100, per=timedelta(minutes=1))``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from ..compat import InvalidTask

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SPELLING = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts in any window of length ``per``, over all workers."""

    count: int
    per: timedelta

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise InvalidTask(f"A rate's count must be an integer >= 1, not {self.count!r}.")
        if not isinstance(self.per, timedelta) or self.per <= timedelta(0):
            raise InvalidTask(f"A rate's window must be a positive timedelta, not {self.per!r}.")

    @property
    def seconds(self) -> float:
        return self.per.total_seconds()

    def __str__(self) -> str:
        """The short spelling where there is one ("100/m"), else "100/90s"."""
        seconds = self.seconds
        for unit, length in reversed(UNITS.items()):
            if seconds == length:
                return f"{self.count}/{unit}"
        return f"{self.count}/{seconds:g}s"


def parse_rate(value: str | Rate | None) -> Rate | None:
    """A ``Rate`` from its spelling ("100/m", "10/s", "5/30s"), a Rate, or None."""
    if value is None or isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise InvalidTask(
            f'rate_limit takes "N/s", "N/m", "N/h", "N/d" or taskmill.Rate, not {value!r}.'
        )
    match = _SPELLING.match(value)
    if match is None:
        raise InvalidTask(
            f'rate_limit {value!r} is not a rate: write "N/s", "N/m", "N/h" or "N/d" '
            '(e.g. "100/m"), or taskmill.Rate(100, per=timedelta(minutes=1)).'
        )
    count, multiple, unit = match.groups()
    return Rate(int(count), timedelta(seconds=int(multiple or 1) * UNITS[unit]))
