"""``manage.py taskmill health``: exit 0 when taskmill is healthy, 1 with the problems on
stderr when it is not, 2 when the database cannot be read. For container health checks,
cron and monitoring that only look at the exit status."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ..health import check_health
from .common import add_database_arguments, chosen_database, non_negative_float, reading_database

HELP = (
    "Exit 0 and print 'ok' if a worker is alive, no unpaused queue has a ready run older "
    "than --max-ready-age and no schedule is late; else exit 1, one problem a line on "
    "stderr. Exit 2: the database cannot be read."
)

UNHEALTHY = 1


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--max-ready-age",
        type=non_negative_float,
        default=300.0,
        metavar="SECONDS",
        help="A ready run waiting longer than this in a queue that is not paused is a "
        "problem (default 300).",
    )
    parser.add_argument(
        "--schedule-grace",
        type=non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="A schedule whose next fire time is further past than this is a problem (default 60).",
    )
    add_database_arguments(parser)


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    database = chosen_database(options)
    with reading_database(database):
        health = check_health(
            database,
            max_ready_age=options["max_ready_age"],
            schedule_grace=options["schedule_grace"],
        )
    if health.ok:
        command.stdout.write("ok")
        for note in health.notes:
            command.stdout.write(f"note: {note}")
        return
    for problem in health.problems:
        command.stderr.write(f"problem: {problem}")
    for note in health.notes:
        command.stderr.write(f"note: {note}")
    command.stderr.flush()
    sys.exit(UNHEALTHY)
