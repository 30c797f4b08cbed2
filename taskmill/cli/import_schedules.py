"""``manage.py taskmill import-schedules``: create or update schedules from an export.

All or nothing: any problem anywhere in the file is reported (every one found, each naming
the schedule and the field) and nothing is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..scheduler.declarations import autodiscover
from ..scheduler.transfer import TransferError, import_entries, parse_document
from ..scheduler.transfer.importing import ImportProgress
from .common import taskmill_backend
from .progress import ProgressLine, on_terminal

HELP = (
    "Create or update schedules from a file written by export-schedules ('-' reads standard "
    "input); nothing is written unless the whole file is valid."
)


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("file", metavar="FILE", help="The JSON document, or '-' for stdin.")
    parser.add_argument(
        "--backend", help="The TASKS alias whose database holds the schedules (default one)."
    )
    parser.add_argument(
        "--no-update",
        action="store_true",
        help="Refuse the file if it names a schedule that exists (default: update it).",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Check the file and report what would change, without writing.",
    )


def read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    backend = taskmill_backend(options["backend"])
    # Import the project's tasks: a schedule may name only a task declared in code.
    autodiscover()
    line = None
    if on_terminal(command) and options.get("verbosity", 1) >= 1:
        line = ProgressLine(command.stdout, min_interval=0.1)
    try:
        entries = parse_document(read(options["file"]))
        report = import_entries(
            entries,
            backend.database,
            update=not options["no_update"],
            dry_run=options["dry_run"],
            progress=_import_progress(line) if line is not None else None,
        )
    except TransferError as exc:
        raise CommandError(
            "The file was not imported; nothing was written:\n  " + "\n  ".join(exc.problems)
        ) from exc
    finally:
        if line is not None:
            line.clear()
    prefix = "would be " if options["dry_run"] else ""
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("skipped (declared in code)", report.skipped),
    ):
        for name in names:
            command.stdout.write(f"{prefix}{label}: {name}")
    if options["dry_run"]:
        command.stdout.write(f"Dry run, nothing written: {report}")
    else:
        command.stdout.write(f"Schedules imported: {report}")


def _import_progress(line: ProgressLine) -> ImportProgress:
    def show(stage: str, done: int, total: int) -> None:
        # The last of each stage always shows: the line must not stop short of the total.
        line.show(f"Importing schedules: {done:,} of {total:,} {stage}...", force=done == total)

    return show
