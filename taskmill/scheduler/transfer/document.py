"""The schedules document: its format, the fields it carries and how each is converted,
and the export. (``importing`` reads it back.)"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ...exceptions import TaskmillError
from ...models import Schedule
from ...serialization import text_problem

FORMAT = "taskmill-schedules"
VERSION = 1

Edge = Schedule.depends_on.through


class TransferError(TaskmillError):
    """A document that cannot be imported; ``problems`` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _WrongType(ValueError):
    pass


# -- JSON values <-> field values ----------------------------------------------------------
# Durations are seconds (a JSON number, like the decorator's every= and misfire_grace=), and
# datetimes are ISO 8601 strings with an offset (exported in UTC). Each reader raises
# _WrongType with what the value must be.


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _WrongType("must be a string")
    problem = text_problem("the string", value)
    if problem:
        raise _WrongType(problem)
    return value


def _optional_int(value: Any) -> int | None:
    # bool is an int in Python but never a priority or a count in a document.
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _WrongType("must be an integer or null")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _WrongType("must be true or false")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _WrongType("must be a JSON list")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _WrongType("must be a JSON object")
    return value


def _seconds(value: Any) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _WrongType("must be a number of seconds")
    return timedelta(seconds=value)


def _optional_seconds(value: Any) -> timedelta | None:
    return None if value is None else _seconds(value)


def _optional_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _WrongType("must be an ISO 8601 date and time string or null")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _WrongType(f"{value!r} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        raise _WrongType(f"{value!r} needs a UTC offset, e.g. '2027-01-01T08:00:00+00:00'")
    return parsed


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _WrongType("must be a list of schedule names")
    return [_text(item) for item in value]


def _seconds_out(value: timedelta | None) -> int | float | None:
    if value is None:
        return None
    microseconds = value // timedelta(microseconds=1)
    whole, rest = divmod(microseconds, 1_000_000)
    return whole if rest == 0 else microseconds / 1_000_000


def _datetime_out(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _Field:
    read: Callable[[Any], Any]
    write: Callable[[Any], Any] = _same


# Every user-editable field of a schedule, in the order an export writes them. The keys are
# the model's field names, so a validation error lands on the key the user wrote.
FIELDS: dict[str, _Field] = {
    "name": _Field(_text),
    "task_path": _Field(_text),
    "kind": _Field(_text),
    "cron": _Field(_text),
    "interval": _Field(_optional_seconds, _seconds_out),
    "run_at": _Field(_optional_datetime, _datetime_out),
    "timezone": _Field(_text),
    "start_at": _Field(_optional_datetime, _datetime_out),
    "end_at": _Field(_optional_datetime, _datetime_out),
    "max_fires": _Field(_optional_int),
    "max_instances": _Field(_optional_int),
    "enabled": _Field(_boolean),
    "run_on_creation": _Field(_boolean),
    "args": _Field(_list),
    "kwargs": _Field(_object),
    "queue_name": _Field(_text),
    "priority": _Field(_optional_int),
    "backend": _Field(_text),
    "misfire_grace": _Field(_seconds, _seconds_out),
    "misfire_policy": _Field(_text),
    "fire_time_kwarg": _Field(_text),
}
REQUIRED = ("name", "task_path", "kind")
# Besides FIELDS: dependencies by name, and whether the schedule is declared in code.
EXTRA_KEYS = ("depends_on", "code_owned")
DOCUMENT_KEYS = ("format", "version", "schedules")


# -- export ---------------------------------------------------------------------------------


def export_document(
    database: str, names: Iterable[str] | None = None, *, include_code_owned: bool = True
) -> dict[str, Any]:
    """The document for the schedules named (all by default), sorted by name.

    Raises ``TransferError`` if a name given is not a schedule.
    """
    rows = Schedule.objects.using(database).order_by("name")
    if names is not None:
        names = list(dict.fromkeys(names))
        rows = rows.filter(name__in=names)
    schedules = list(rows)
    if names is not None:
        missing = sorted(set(names) - {row.name for row in schedules})
        if missing:
            raise TransferError([f"No schedule named {name!r}." for name in missing])
    if not include_code_owned:
        schedules = [row for row in schedules if not row.code_owned]
    edges = Edge.objects.using(database)
    if names is not None:
        edges = edges.filter(from_schedule_id__in=[row.pk for row in schedules])
    dependencies: dict[int, list[str]] = {}
    for source, target in edges.values_list("from_schedule_id", "to_schedule__name"):
        dependencies.setdefault(source, []).append(target)
    return {
        "format": FORMAT,
        "version": VERSION,
        "schedules": [
            {
                **{key: spec.write(getattr(row, key)) for key, spec in FIELDS.items()},
                "depends_on": sorted(dependencies.get(row.pk, [])),
                "code_owned": row.code_owned,
            }
            for row in schedules
        ],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
