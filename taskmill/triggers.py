"""Triggers: when a schedule's occurrences fall, as aware UTC datetimes.

Pure rules, below the models: ``Schedule`` computes its first fire time with them, the
scheduler its misfires and next fire times.

Three kinds share one small interface (``after`` and ``latest``), so the fire transaction
and the misfire rules never ask which kind they hold. Everything returned is UTC; a cron
expression is evaluated in its schedule's time zone.

Cron expressions are parsed and iterated by cronsim (5 fields, or 6 with seconds first).
Daylight-saving follows Debian cron's rule, for 5 and 6 fields alike:

* a *wall-clock* expression (its minute and hour fields are not ``*``-based, e.g.
  ``30 2 * * *``) is iterated in local wall time: a time inside a skipped hour fires once,
  at the first valid instant after the gap (03:00 on the spring-forward day in Paris); a
  time inside a repeated hour fires once, at its first occurrence;
* a *frequent* expression (``*/15 * * * *``, ``0 * * * * *``...) is iterated in absolute
  time: it fires in both passes of a repeated hour and not at all in a skipped one, so
  its rhythm never breaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .exceptions import InvalidSchedule

ONE_MICROSECOND = timedelta(microseconds=1)
# The longest interval or misfire grace time: 1,000 years keeps every fire time and grace
# window far inside datetime's range (year 9999) and a database's duration column.
MAX_DURATION = timedelta(days=365_250)
# The times a schedule may name (run_at, start, end): far enough inside datetime's range
# (years 1-9999) that a time zone's offset, an interval or a grace time added to them can
# never overflow it.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(7999, 12, 31, 23, 59, 59, tzinfo=UTC)


def moment_problem(value: datetime) -> str | None:
    """Why an aware datetime cannot be a schedule's time, or None."""
    if not EARLIEST <= value <= LATEST:
        return (
            f"{value.isoformat()} is out of range: a schedule's times lie between "
            f"{EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"
        )
    return None


def get_zone(name: str) -> ZoneInfo:
    if not isinstance(name, str):
        raise InvalidSchedule(
            f"A time zone must be an IANA name (a string), not {type(name).__name__} {name!r}."
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(
            f"Unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC'."
        ) from exc


# Each field's name and the values it ranges over, in the 6-field order (seconds first).
CRON_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_NAMES = {
    "month": {name: number for number, name in enumerate(MONTHS, 1)},
    "day-of-week": {name: number for number, name in enumerate(WEEKDAYS)},
}


def _cron_value(field: str, text: str) -> int | None:
    if text.isdigit():
        return int(text)
    return CRON_NAMES.get(field, {}).get(text.upper())


def _step_problem(field: str, low: int, high: int, item: str) -> str | None:
    """What is wrong with a stepped item (``*/61``, ``1-5/100``), if anything.

    cronsim takes any step, and a step longer than the range it steps over matches the
    range's first value only: ``*/61`` in the minute field fires hourly, surely not what its
    author meant. Such a step is refused.
    """
    base, _, step_text = item.partition("/")
    if not step_text.isdigit():
        return None  # no step, or one cronsim has already judged
    step = int(step_text)
    if base == "*":
        first, last = low, high
    else:
        start_text, _, end_text = base.partition("-")
        first = _cron_value(field, start_text)
        last = _cron_value(field, end_text) if end_text else high
        if first is None or last is None:
            return None
    span = last - first + 1
    if step > span:
        return (
            f"the step {step} in {item!r} is larger than the {field} range it steps over "
            f"({first}-{last}, {span} values)"
        )
    return None


def _check_steps(expression: str, fields: list[str]) -> None:
    names = CRON_FIELDS if len(fields) == 6 else CRON_FIELDS[1:]
    for (field, low, high), text in zip(names, fields, strict=True):
        for item in text.split(","):
            problem = _step_problem(field, low, high, item)
            if problem:
                raise InvalidSchedule(f"Invalid cron expression {expression!r}: {problem}.")


def validate_cron(expression: str) -> str:
    """Return the normalised expression or raise ``InvalidSchedule`` saying what is wrong."""
    if not isinstance(expression, str):
        raise InvalidSchedule(
            f"A cron expression must be a string, not {type(expression).__name__} {expression!r}."
        )
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"Invalid cron expression {expression!r}: expected 5 fields (minute hour "
            "day-of-month month day-of-week) or 6 with seconds first, "
            f"got {len(fields)}."
        )
    try:
        iterator = CronSim(" ".join(fields), datetime(2000, 1, 1))
        next(iterator)
    except CronSimError as exc:
        raise InvalidSchedule(
            f"Invalid cron expression {expression!r}: {str(exc).rstrip('.')} "
            "(the fields are [second] minute hour day-of-month month day-of-week)."
        ) from exc
    except StopIteration:
        raise InvalidSchedule(
            f"Invalid cron expression {expression!r}: it never matches any date."
        ) from None
    _check_steps(expression, fields)
    return " ".join(fields)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: taskmill stores aware UTC datetimes")
    return value.astimezone(UTC)


class Trigger:
    """When occurrences fall. Subclasses answer two questions, in UTC."""

    def after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after ``moment``; None if there is none."""
        raise NotImplementedError

    def latest(self, since: datetime, until: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` most recent occurrences in [since, until], oldest first."""
        raise NotImplementedError


@dataclass(frozen=True)
class OnceTrigger(Trigger):
    at: datetime

    def after(self, moment: datetime) -> datetime | None:
        at = _as_utc(self.at)
        return at if at > moment else None

    def latest(self, since: datetime, until: datetime, limit: int) -> list[datetime]:
        at = _as_utc(self.at)
        return [at] if since <= at <= until and limit > 0 else []


@dataclass(frozen=True)
class IntervalTrigger(Trigger):
    """Every ``every``, counted in absolute time from ``anchor`` (an occurrence)."""

    anchor: datetime
    every: timedelta

    def __post_init__(self) -> None:
        if self.every <= timedelta(0):
            raise InvalidSchedule(f"An interval must be positive, not {self.every}.")

    def _index_at_or_before(self, moment: datetime) -> int:
        # Whole microseconds keep the arithmetic exact: no float drift over years.
        return (moment - _as_utc(self.anchor)) // self.every

    def after(self, moment: datetime) -> datetime | None:
        return _as_utc(self.anchor) + (self._index_at_or_before(moment) + 1) * self.every

    def latest(self, since: datetime, until: datetime, limit: int) -> list[datetime]:
        anchor = _as_utc(self.anchor)
        last = self._index_at_or_before(until)
        first = max(-((anchor - since) // self.every), last - limit + 1)  # ceil((since-a)/e)
        return [anchor + index * self.every for index in range(first, last + 1)]


@dataclass(frozen=True)
class CronTrigger(Trigger):
    expression: str
    zone_name: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", validate_cron(self.expression))
        object.__setattr__(self, "zone", get_zone(self.zone_name))
        fields = self.expression.split()
        minute, hour = (fields[0], fields[1]) if len(fields) == 5 else (fields[1], fields[2])
        wall_clock = not minute.startswith("*") and not hour.startswith("*")
        object.__setattr__(self, "wall_clock", wall_clock and self.zone_name != "UTC")
        # Six fields always: cronsim applies its own DST fix-ups to 5-field expressions
        # only; taskmill applies one rule to both forms (below), so cronsim must not.
        object.__setattr__(
            self, "six_fields", self.expression if len(fields) == 6 else "0 " + self.expression
        )

    # -- iteration: absolute time for frequent expressions, wall time for the others -------

    def _iterate(self, start: datetime, reverse: bool):
        if not self.wall_clock:
            for value in CronSim(self.six_fields, start.astimezone(self.zone), reverse=reverse):
                yield value.astimezone(UTC)
            return
        # Wall clock: iterate naive local time, then map each time onto the real timeline.
        local = start.astimezone(self.zone)
        previous: datetime | None = None
        for naive in CronSim(self.six_fields, local.replace(tzinfo=None), reverse=reverse):
            value = self._wall_to_utc(naive)
            if value == previous:
                continue  # several skipped-hour times map onto the same instant
            previous = value
            yield value

    def _wall_to_utc(self, naive: datetime) -> datetime:
        first = naive.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if first.astimezone(self.zone).replace(tzinfo=None) == naive:
            return first  # valid; in a repeated hour fold=0 is the first occurrence
        # Skipped by a spring-forward gap: fire at the first valid instant after it.
        low = naive.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        high = first
        before = low.astimezone(self.zone).utcoffset()
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.zone).utcoffset() == before:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0)

    def after(self, moment: datetime) -> datetime | None:
        # cronsim's forward iteration is strictly after its start, at whole seconds.
        for value in self._iterate(moment, reverse=False):
            if value > moment:
                return value
        return None

    def latest(self, since: datetime, until: datetime, limit: int) -> list[datetime]:
        found: list[datetime] = []
        if limit <= 0:
            return found
        # Reverse iteration is strictly before its start: start just after `until`.
        for value in self._iterate(until + ONE_MICROSECOND, reverse=True):
            if value > until:
                continue
            if value < since:
                break
            found.append(value)
            if len(found) >= limit:
                break
        found.reverse()
        return found


@lru_cache(maxsize=4096)
def cron_trigger(expression: str, zone_name: str) -> CronTrigger:
    """One trigger per (expression, time zone): a trigger holds no iteration state, and
    parsing and checking the expression for each of a thousand schedules due together was
    a good part of a tick's time."""
    return CronTrigger(expression, zone_name)
