"""How the control room shows times, durations, JSON and errors: to the second (or the
millisecond where it matters), never one escaped JSON string."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..exceptions import COUNTED_AS, LOST, said_once
from ..templatetags.taskmill_admin import seconds


def moment(value: datetime | None) -> str:
    """A time in the admin's time zone, to the second ("2026-12-01 14:03:27")."""
    if value is None:
        return "—"
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S}"


def moment_ms(value: datetime | None) -> str:
    if value is None:
        return "—"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}"


def short_moment(value: datetime | None, *, below: datetime | None = None) -> SafeString | str:
    """A time in a list's cell, where width is short: "12-07 13:48:17" (with the year when
    it is not this year's), or the time alone when it falls on the day of BELOW, the time
    on the line above it. The whole, to the millisecond with its zone, is in its title."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    if below is not None and timezone.localtime(below).date() == local.date():
        shown = f"{local:%H:%M:%S}"
    elif local.year == timezone.localtime().year:
        shown = f"{local:%m-%d %H:%M:%S}"
    else:
        shown = f"{local:%Y-%m-%d %H:%M:%S}"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', local.isoformat(), moment_ms(value), shown
    )


# Where a long name may break across lines: after the dots of a module path, the
# underscores of a function's name, the slashes of a time zone.
_BREAKS = re.compile(r"(?<=[._/])")


def breakable(text: str) -> SafeString:
    """TEXT that a narrow cell may wrap after its dots, underscores and slashes (which
    browsers never break at by themselves), and nowhere else."""
    return format_html_join(mark_safe("<wbr>"), "{}", ((part,) for part in _BREAKS.split(text)))


def between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return seconds(max((end - start).total_seconds(), 0.0))


def pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre class="tm-json">{}</pre>', text)


def error_list(errors: list[dict[str, Any]] | Any) -> SafeString:
    """Each failed attempt's exception in one line, its traceback below, readable."""
    if not isinstance(errors, list) or not errors:
        return format_html('<span class="tm-quiet">{}</span>', "none")
    return format_html(
        '<ol class="tm-errors">{}</ol>',
        format_html_join(
            "",
            "<li><strong>{}</strong>: {}<details><summary>traceback</summary>"
            '<pre class="tm-traceback">{}</pre></details></li>',
            (_error_row(error) for error in errors),
        ),
    )


def _error_row(error: Any) -> tuple[str, str, str]:
    if not isinstance(error, dict):
        return ("(not an error entry)", repr(error)[:500], "")
    path = str(error.get("exception_class_path", "?"))
    text = str(error.get("traceback", ""))
    name, message = path.rsplit(".", 1)[-1], last_line(text)
    # The traceback's last line repeats the class ("ValueError: ..."), and some messages
    # start with it again: the row shows the class once, in bold.
    message = said_once(message, path, name)
    if error.get(COUNTED_AS) == LOST:  # why a run with max_attempts=1 went again
        message += " (a lost attempt: the database's fault, not the task's)"
    return (name, message, text)


def last_line(traceback_text: str) -> str:
    """The exception's own line of a traceback (its last non-empty line)."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
