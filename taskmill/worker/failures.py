"""An attempt's exception written down: the error entry stored with its run, and the line's
worth the worker logs of it."""

from __future__ import annotations

import traceback

from ..exceptions import said_once


def error_entry(exc: BaseException) -> dict[str, str]:
    exc_type = type(exc)
    return {
        "exception_class_path": f"{exc_type.__module__}.{exc_type.__qualname__}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def failure_summary(exc: BaseException) -> str:
    """``ExceptionClass: first line of its message``: one log line's worth, the class said
    once even when the message starts with it."""
    name = type(exc).__qualname__
    lines = said_once(str(exc).strip(), name, type(exc).__name__).splitlines()
    if not lines:
        return name
    return f"{name}: {lines[0]}" + (" [...]" if len(lines) > 1 else "")


def chained(exc: BaseException, cause: BaseException) -> BaseException:
    """``exc``, raised ``from cause``: the worker's verdict over what the task raised."""
    exc.__cause__ = cause
    return exc


__all__ = ["chained", "error_entry", "failure_summary"]
