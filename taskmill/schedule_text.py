"""A schedule's "when" as a person would say it: "every 30 seconds", "at 02:30 every day
(Europe/Paris)", "once at 2026-01-01 00:00 UTC".

For the control room's lists and pages. Cron expressions of the common shapes (a fixed
time each day or on given weekdays, every N seconds, minutes or hours) are put into words;
any other is shown as written, with its time zone, rather than paraphrased wrongly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .triggers import get_zone

UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def describe(
    kind: str,
    *,
    cron: str = "",
    interval: timedelta | None = None,
    run_at: datetime | None = None,
    zone: str = "UTC",
) -> str:
    """``kind`` is a ``Schedule.Kind`` value: "cron", "interval" or "once"."""
    if kind == "interval" and interval is not None:
        return describe_interval(interval)
    if kind == "cron" and cron:
        return describe_cron(cron, zone)
    if kind == "once" and run_at is not None:
        local = run_at.astimezone(get_zone(zone))
        seconds = ":%S" if local.second else ""
        return f"once at {local:%Y-%m-%d %H:%M}{seconds} {local.tzname() or zone}"
    return kind


def describe_interval(interval: timedelta) -> str:
    """ "every 30 seconds", "every 2 minutes", "every hour", "every 1 hour 30 minutes"."""
    total = interval.total_seconds()
    if total <= 0:
        return f"every {interval}"
    if total < 1:
        return f"every {round(total * 1000)} ms"
    whole = int(total)
    parts = []
    for name, size in UNITS:
        count, whole = divmod(whole, size)
        if count:
            parts.append((count, name))
    if len(parts) == 1 and parts[0][0] == 1:
        return f"every {parts[0][1]}"
    return "every " + " ".join(f"{count} {name}{'s' * (count != 1)}" for count, name in parts)


def describe_cron(expression: str, zone: str) -> str:
    """Words for the common shapes; the expression itself for the others."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        return f"cron {expression} ({zone})"
    second, minute, hour, day, month, weekday = fields
    calendar_free = day == "*" and month == "*"
    said = None
    if calendar_free and weekday == "*":
        said = _every_step(second, minute, hour)
    if said is None and calendar_free and second.isdigit() and minute.isdigit():
        days = _weekdays(weekday)
        if hour.isdigit() and days is not None:
            clock = f"{int(hour):02d}:{int(minute):02d}"
            if int(second):
                clock += f":{int(second):02d}"
            said = f"at {clock} {days}"
    if said is None:
        return f"cron {expression} ({zone})"
    # A time of day depends on the zone; a step of seconds or minutes does not.
    return f"{said} ({zone})" if said.startswith("at ") else said


def _every_step(second: str, minute: str, hour: str) -> str | None:
    """Every N seconds / minutes / hours, when the finer fields are fixed at 0."""
    if minute == "*" and hour == "*":
        step = _step(second)
        if step:
            return "every second" if step == 1 else f"every {step} seconds"
    if second == "0" and hour == "*":
        step = _step(minute)
        if step:
            return "every minute" if step == 1 else f"every {step} minutes"
    if second == "0" and minute == "0":
        step = _step(hour)
        if step:
            return "every hour" if step == 1 else f"every {step} hours"
    return None


def _step(field: str) -> int | None:
    if field == "*":
        return 1
    if field.startswith("*/") and field[2:].isdigit() and int(field[2:]) > 0:
        return int(field[2:])
    return None


def _weekdays(field: str) -> str | None:
    if field == "*":
        return "every day"
    if field in {"1-5", "MON-FRI", "mon-fri"}:
        return "on weekdays"
    names = []
    for item in field.split(","):
        if not item.isdigit() or int(item) > 7:
            return None
        names.append(WEEKDAYS[int(item) % 7])
    return "on " + ", ".join(names)
