"""What the subcommands share: logging set-up and finding taskmill's backend."""

from __future__ import annotations

import argparse
import logging
import sys

from django.core.management.base import CommandError

from ..backend import DatabaseBackend
from ..compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends


def configure_logging(verbosity: int) -> None:
    """Show taskmill's logs on stderr unless the project's LOGGING already handles them."""
    logger = logging.getLogger("taskmill")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))


def taskmill_backend(alias: str | None) -> DatabaseBackend:
    """The backend named ``alias``, or the default one, or the first taskmill backend."""
    if alias is None:
        aliases = list(task_backends.settings)
        if DEFAULT_TASK_BACKEND_ALIAS in aliases:
            aliases.remove(DEFAULT_TASK_BACKEND_ALIAS)
            aliases.insert(0, DEFAULT_TASK_BACKEND_ALIAS)
        for candidate in aliases:
            if isinstance(task_backends[candidate], DatabaseBackend):
                return task_backends[candidate]
        raise CommandError(
            "No TASKS backend uses taskmill.backend.DatabaseBackend; configure one in settings."
        )
    if alias not in task_backends.settings:
        raise CommandError(f"There is no TASKS backend named {alias!r}.")
    backend = task_backends[alias]
    if not isinstance(backend, DatabaseBackend):
        raise CommandError(
            f"TASKS backend {alias!r} is {type(backend).__qualname__}, not taskmill's "
            "DatabaseBackend."
        )
    return backend


# Argument types shared by the subcommands: a bad value is a usage error naming the rule.
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value
