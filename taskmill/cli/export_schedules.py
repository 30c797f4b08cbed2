"""``manage.py taskmill export-schedules``: the schedules' definitions as a JSON document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..scheduler.transfer import TransferError, dumps, export_document
from .common import taskmill_backend

HELP = (
    "Write the schedules' definitions (not their fire state) as JSON, for import-schedules "
    "elsewhere."
)


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--backend", help="The TASKS alias whose database holds the schedules (default one)."
    )
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="Write to FILE instead of standard output."
    )
    parser.add_argument(
        "--name",
        dest="names",
        action="append",
        metavar="NAME",
        help="Export this schedule (repeatable; default: every schedule).",
    )
    owned = parser.add_mutually_exclusive_group()
    owned.add_argument(
        "--include-code-owned",
        dest="include_code_owned",
        action="store_true",
        default=True,
        help="Include schedules declared in code, marked as such (the default); "
        "import-schedules skips them.",
    )
    owned.add_argument(
        "--exclude-code-owned",
        dest="include_code_owned",
        action="store_false",
        help="Leave out schedules declared in code.",
    )


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    backend = taskmill_backend(options["backend"])
    try:
        document = export_document(
            backend.database, options["names"], include_code_owned=options["include_code_owned"]
        )
    except TransferError as exc:
        raise CommandError(str(exc)) from exc
    text = dumps(document)
    if not options["output"]:
        command.stdout.write(text, ending="")
        return
    try:
        Path(options["output"]).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot write {options['output']}: {exc.strerror}.") from exc
    # On stderr: standard output stays clean for scripts even when writing to a file.
    command.stderr.write(f"{len(document['schedules'])} schedules written to {options['output']}")
