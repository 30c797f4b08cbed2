"""``manage.py taskmill scheduler``: fire due schedules until stopped, without running tasks.

Workers run a scheduler too (unless ``--no-scheduler``); this command is for deployments
that want it apart. Any number may run at once.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..scheduler.declarations import autodiscover
from ..scheduler.firing import BATCH_SIZE
from ..scheduler.loop import Scheduler, SchedulerOptions
from .common import (
    add_log_format_argument,
    configure_logging,
    positive_float,
    positive_int,
    taskmill_backend,
)
from .signals import StopSignals

HELP = "Fire due schedules until stopped; any number of schedulers may run at once."


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--backend", help="The TASKS alias whose database holds the schedules (default one)."
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=BATCH_SIZE,
        help=f"Due schedules fired per transaction (default {BATCH_SIZE}).",
    )
    parser.add_argument(
        "--max-sleep",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="Longest sleep between checks for due schedules; schedules created or edited "
        "elsewhere are seen within it (default 1).",
    )
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="Do not write the schedules declared in code to the database at start.",
    )
    add_log_format_argument(parser)


def prepare(database: str, options: dict[str, Any]) -> Scheduler:
    """Import the project's tasks (and so its declarations), sync them unless told not to.

    A database gone again since the start-up wait does not end the command: the scheduler
    syncs once it is back, before it fires. An invalid declaration does (ValidationError).
    """
    autodiscover()
    scheduler = Scheduler(
        SchedulerOptions(
            database=database,
            max_sleep=options["max_sleep"],
            batch_size=options.get("batch_size") or BATCH_SIZE,
        )
    )
    if not options.get("no_sync"):
        scheduler.sync_at_start()
    return scheduler


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    configure_logging(options["verbosity"], options["log_format"])
    backend = taskmill_backend(options["backend"])
    try:
        scheduler = prepare(backend.database, options)
    except ValidationError as exc:  # a declaration that cannot be stored: say which, and why
        raise CommandError("; ".join(exc.messages)) from exc

    StopSignals(scheduler.request_stop).install()
    scheduler.run()
