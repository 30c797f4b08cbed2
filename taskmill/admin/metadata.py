"""A run's metadata and progress in the control room: the progress bar (the run's page, and
running runs in the list), the metadata as JSON, and the search ``meta:key=value``.

The metadata is what the task wrote about itself: data, like its arguments. So it is shown,
masked (TASKMILL_ADMIN_MASKED_KEYS), only to who may see arguments, and only they may
search it; the bar and its figures are shown to whoever may view runs, its message (free
text the task wrote) again only to who may see arguments.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import Run
from ..progress import progress_in
from . import masking
from .display import moment_ms, pretty_json

# meta:key=value, meta:outer.inner=value: a key path into the metadata, dot-separated.
METADATA_SEARCH = re.compile(r"^meta:([^=\s]+)=(.+)$")
# What the searched key's expression is called in the query.
_ALIAS = "taskmill_metadata_key"


def progress_of(run: Run) -> dict[str, Any] | None:
    return progress_in(run.metadata)


def figures(done: float, total: float) -> str:
    """ "37/100 (37%)"; a total of 0 has no percentage."""
    text = f"{_shown(done)}/{_shown(total)}"
    if total > 0:
        text += f" ({min(done / total, 1.0):.0%})"
    return text


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def progress_bar(run: Run, *, message: bool, small: bool = False) -> SafeString | str:
    """The bar (a native <progress>: its value and max are the report's), its figures and,
    with ``message``, the task's message and when it was reported. "—" without a report."""
    progress = progress_of(run)
    if progress is None:
        return "—"
    done, total = progress["done"], progress["total"]
    bar = (
        format_html(
            '<progress class="tm-progress" max="{}" value="{}">{}</progress>',
            _shown(total),
            _shown(min(done, total)),
            figures(done, total),
        )
        if total > 0
        else format_html('<progress class="tm-progress">{}</progress>', figures(done, total))
    )
    text = figures(done, total)
    if small:
        return format_html('<span class="tm-progress-small">{} {}</span>', bar, text)
    said = progress.get("message") if message else None
    reported = progress.get("at") if message else None
    return format_html(
        '<div class="tm-progress-box">{}<span class="tm-progress-figures">{}</span>{}{}</div>',
        bar,
        text,
        format_html('<span class="tm-progress-message">{}</span>', said)
        if isinstance(said, str) and said
        else "",
        format_html('<span class="tm-quiet tm-progress-at">reported {}</span>', _when(reported))
        if isinstance(reported, str)
        else "",
    )


def _when(reported: str) -> str:
    """The report's time as the run's other times are shown (the admin's time zone, to the
    millisecond); as written when it is not a time."""
    try:
        moment = datetime.fromisoformat(reported)
    except ValueError:
        return reported
    return moment_ms(moment) if moment.tzinfo is not None else reported


def metadata_json(run: Run) -> SafeString:
    return pretty_json(masking.masked_value(run.metadata or {}))


def search_metadata(queryset: QuerySet[Run], path: str, raw: str) -> QuerySet[Run] | None:
    """Runs whose metadata holds ``raw`` at ``path`` ("a.b": the key b inside a), a JSON key
    lookup that every supported database evaluates; None if the path is not one.

    The value is read as JSON when it can be, else as a string, and a value typed as a
    number or a boolean also finds its text ("42" finds 42 and "42")."""
    keys = path.split(".")
    if not all(keys):
        return None
    # KeyTransform, not a lookup string: a key named "contains" or holding "__" stays a key.
    expression: Any = "metadata"
    for key in keys:
        expression = KeyTransform(key, expression)
    value = _typed(raw)
    condition = Q(**{_ALIAS: value})
    if not isinstance(value, str):
        condition |= Q(**{_ALIAS: raw})
    return queryset.alias(**{_ALIAS: expression}).filter(condition)


def search_touches_masked_key(path: str, raw: str) -> bool:
    return masking.touches_masked_key("__".join(path.split(".")), _typed(raw))


def _typed(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


__all__ = [
    "METADATA_SEARCH",
    "figures",
    "metadata_json",
    "progress_bar",
    "progress_of",
    "search_metadata",
    "search_touches_masked_key",
]
