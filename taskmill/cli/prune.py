"""``manage.py taskmill prune``: delete finished runs now, by their time-to-live or by age.

Workers already prune expired runs on their own (taskmill.worker.duties.pruner), through
the same service (taskmill.pruning); this is for a first clean-up after setting a TTL, for
runs kept forever (no TTL), and for a backlog too big to wait for. Bad input is an argparse
error, hence a CommandError under call_command(), before anything is deleted.
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from ..conf import setting
from ..models import FINISHED_STATUSES, RunStatus
from ..pruning import Progress, prunable_runs, prune_runs
from .common import positive_int, taskmill_backend
from .progress import ProgressLine, on_terminal

HELP = (
    "Delete finished runs whose time-to-live has passed, or with --older-than those that "
    "finished longer ago than that, whatever their time-to-live."
)

DURATION = re.compile(r"(\d+)([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``7d`` or ``2w``."""
    match = DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give a whole number and a unit, s, m, h, d or w "
            "(30s, 15m, 12h, 7d, 2w)"
        )
    number, unit = match.groups()
    try:
        return timedelta(**{UNITS[unit]: int(number)})
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too long a duration") from None


def finished_status(text: str) -> str:
    """A finished status, in any case. Active runs are never pruned: saying so is an error."""
    status = text.strip().upper()
    if status in FINISHED_STATUSES:
        return status
    known = ", ".join(FINISHED_STATUSES)
    if status in RunStatus.values:
        raise argparse.ArgumentTypeError(
            f"{status} runs are not finished and are never pruned; choose from {known}"
        )
    raise argparse.ArgumentTypeError(f"{text!r} is not a run status; choose from {known}")


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--older-than",
        type=duration,
        metavar="DURATION",
        help="Delete finished runs that finished more than DURATION ago (30s, 15m, 12h, 7d, "
        "2w), expired or not. Default: the runs whose time-to-live has passed.",
    )
    parser.add_argument(
        "--status",
        dest="statuses",
        action="append",
        type=finished_status,
        metavar="STATUS",
        help="Only runs that ended SUCCESSFUL, FAILED or CANCELLED (repeatable; default all "
        "three).",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Count and print what would be deleted; delete nothing.",
    )
    parser.add_argument(
        "--backend",
        help="The TASKS alias whose database holds the runs (default one); every finished "
        "run in that database is considered, whichever alias enqueued it.",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="Rows deleted per transaction (default TASKMILL_PRUNE_BATCH).",
    )


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    backend = taskmill_backend(options["backend"])
    batch_size = options["batch_size"] or int(setting("TASKMILL_PRUNE_BATCH"))
    now = timezone.now()
    criteria: dict[str, Any] = {"statuses": options["statuses"]}
    if options["older_than"] is not None:
        criteria["finished_before"] = now - options["older_than"]
    else:
        criteria["expired_before"] = now
    dry_run = options["dry_run"]
    quiet = options.get("verbosity", 1) < 1
    # A dry run is one COUNT: nothing to show progress of.
    line = None
    progress: Progress | None = None
    if on_terminal(command) and not quiet and not dry_run:
        line = ProgressLine(command.stdout)
        progress = _deletion_progress(line, prunable_runs(backend.database, **criteria).count())
    count = prune_runs(
        backend.database,
        **criteria,
        batch_size=batch_size,
        dry_run=dry_run,
        progress=progress,
    )
    if quiet:
        return
    summary = f"{'Would delete' if dry_run else 'Deleted'} {count:,} finished {_runs(count)}."
    if line is not None:
        line.finish(summary)
    else:
        command.stdout.write(summary)


def _deletion_progress(line: ProgressLine, total: int) -> Progress:
    def show(done: int) -> None:
        # The total was counted before the first batch: concurrent pruners may make it high.
        line.show(f"Deleting finished runs: {done:,} of about {max(done, total):,}...")

    return show


def _runs(count: int) -> str:
    return "run" if count == 1 else "runs"
