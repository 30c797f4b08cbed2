"""A progress report, as ``context.set_progress(done, total, message)`` stores it in a run's
metadata and the control room reads it back: ``metadata["progress"] = {"done", "total",
"message", "at"}``. Pure: the worker writes it (worker/metadata.py), the admin shows it."""

from __future__ import annotations

import math
from typing import Any

from django.utils import timezone

# Where the report is kept in the run's metadata.
PROGRESS_KEY = "progress"


def progress_entry(done: Any, total: Any, message: Any) -> dict[str, Any]:
    """``{"done", "total", "message", "at"}``, checked: what a mistaken call passed is said
    to the task at once, not found later as a broken bar."""
    for name, value in (("done", done), ("total", total)):
        if not _number(value) or value < 0:
            raise ValueError(f"set_progress(): {name} must be a number >= 0, not {value!r}.")
    if not isinstance(message, str):
        raise TypeError(f"set_progress(): message must be a string, not {message!r}.")
    return {"done": done, "total": total, "message": message, "at": timezone.now().isoformat()}


def progress_in(metadata: Any) -> dict[str, Any] | None:
    """The report a run's metadata holds, if it has the shape ``progress_entry`` writes
    (done and total numbers: a task may have put anything under the key)."""
    progress = metadata.get(PROGRESS_KEY) if isinstance(metadata, dict) else None
    if not isinstance(progress, dict):
        return None
    if not (_number(progress.get("done")) and _number(progress.get("total"))):
        return None
    return progress


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["PROGRESS_KEY", "progress_entry", "progress_in"]
