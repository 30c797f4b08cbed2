"""``manage.py taskmill sync-schedules``: write the schedules declared in code to the database."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..scheduler.declarations import autodiscover, sync_schedules
from .common import taskmill_backend

HELP = (
    "Create or update the schedules declared with @taskmill.schedule; disable code-owned "
    "schedules no longer declared."
)


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--backend", help="The TASKS alias whose database holds the schedules (default one)."
    )


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    backend = taskmill_backend(options["backend"])
    autodiscover()
    try:
        report = sync_schedules(backend.database)
    except ValidationError as exc:
        raise CommandError("; ".join(exc.messages)) from exc
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("disabled", report.disabled),
    ):
        for name in names:
            command.stdout.write(f"{label}: {name}")
    command.stdout.write(f"Schedules synced: {report}")
