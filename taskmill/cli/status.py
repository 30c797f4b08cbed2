"""``manage.py taskmill status``: queues, workers, late schedules, orphaned runs and runs of
unknown tasks at a glance, as tables for a person or ``--json`` for a machine."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from ..conf import setting
from ..limits.report import QueueReport, in_use_text, limits_text, queue_reports, source_text
from ..overview import (
    QueueOverview,
    as_json,
    late_schedules,
    open_batches,
    orphaned_runs,
    queue_overview,
    worker_overview,
)
from ..unknown_tasks import COUNT_CAP, UnknownTasks, unknown_tasks
from .common import (
    add_database_arguments,
    chosen_database,
    non_negative_float,
    positive_int,
    reading_database,
)

HELP = (
    "Show each queue's runs (ready, deferred, waiting, running, held back by a limit), its "
    "limits and what they hold back, the workers and their heartbeats, late schedules, "
    "orphaned runs, runs of unknown tasks and open batches; --json for scripts."
)


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--json", action="store_true", help="Write one JSON document.")
    add_database_arguments(parser)
    parser.add_argument(
        "--schedule-grace",
        type=non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="A schedule is late once its next fire time is this far past (default 60).",
    )
    parser.add_argument(
        "--orphan-limit",
        type=positive_int,
        default=100,
        metavar="N",
        help="List at most N orphaned runs (default 100).",
    )


def collect(database: str, options: dict[str, Any]) -> dict[str, Any]:
    queues = queue_overview(database)
    return {
        "database": database,
        "generated_at": timezone.now(),
        "lease": float(setting("TASKMILL_LEASE")),
        "queues": queues,
        "limits": queue_reports(database, queues),
        "workers": worker_overview(database),
        "late_schedules": late_schedules(database, grace=options["schedule_grace"]),
        "orphaned_runs": orphaned_runs(database, limit=options["orphan_limit"]),
        "unknown_tasks": unknown_tasks(database),
        "open_batches": open_batches(database),
    }


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    database = chosen_database(options)
    with reading_database(database):
        status = collect(database, options)
    if options["json"]:
        command.stdout.write(json.dumps(as_document(status), indent=2))
        return
    command.stdout.write("\n".join(render(status)))


def as_document(status: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: each queue with its limits and what they hold back."""
    document = as_json({key: value for key, value in status.items() if key != "limits"})
    # Each queue carries "capped" (the states counted only up to "count_cap", their figures
    # floors) and "count_cap"; the figures keep their type, int.
    for queue in document["queues"]:
        report = as_json(status["limits"][queue["name"]])
        queue["limits"] = {
            "concurrency_limit": report["concurrency_limit"],
            "rate_limit": report["rate_limit"],
            "set_at_run_time": report["set_at_run_time"],
            "limits_set_at": report["limits_set_at"],
            "settings": report["settings"],
        }
        for key in ("in_use", "started_in_window", "at_limit", "top_held_keys"):
            queue[key] = report[key]
    return document


# -- the tables -------------------------------------------------------------------------------


def render(status: dict[str, Any]) -> list[str]:
    when = _time(status["generated_at"])
    lines = [f"taskmill status of database {status['database']!r} at {when}"]
    queues = status["queues"]
    lines += ["", f"Queues ({len(queues)})"]
    lines += _table(
        ["QUEUE", "READY", "DEFERRED", "WAITING", "RUNNING", "HELD", "OLDEST READY", "PAUSED"],
        [
            [
                queue.name,
                queue.shown("ready"),
                queue.shown("scheduled"),
                queue.shown("waiting"),
                queue.shown("running"),
                queue.shown("held"),
                _duration(queue.oldest_ready_age),
                f"since {_time(queue.paused_at)}" if queue.paused else "no",
            ]
            for queue in queues
        ],
        numeric={1, 2, 3, 4, 5},
        empty="no active runs and no paused queue",
    )
    lines += _capped(queues)
    lines += _limits(status["limits"])
    workers = status["workers"]
    alive = sum(worker.alive for worker in workers)
    lines += ["", f"Workers ({alive} alive of {len(workers)} not stopped)"]
    lines += _table(
        ["WORKER", "STATE", "HEARTBEAT", "ALIVE", "RUNNING", "QUEUES"],
        [
            [
                worker.id,
                worker.state,
                f"{_duration(worker.heartbeat_age)} ago",
                "yes" if worker.alive else f"no (lease {status['lease']:g}s)",
                f"{worker.running}/{worker.concurrency}",
                ", ".join(worker.queues) if worker.queues is not None else "all",
            ]
            for worker in workers
        ],
        numeric={4},
        empty="none",
    )
    late = status["late_schedules"]
    lines += ["", f"Late schedules ({len(late)})"]
    lines += _table(
        ["SCHEDULE", "TASK", "DUE AT", "LATE BY", "HELD BACK UNTIL"],
        [
            [
                schedule.name,
                schedule.task_path,
                _time(schedule.next_fire_at),
                _duration(schedule.lateness),
                _time(schedule.waiting_until) if schedule.waiting_until else "-",
            ]
            for schedule in late
        ],
        empty="none",
    )
    orphans = status["orphaned_runs"]
    lines += ["", f"Orphaned runs: lease expired, not rescued yet ({len(orphans)})"]
    lines += _table(
        ["RUN", "TASK", "QUEUE", "WORKER", "ATTEMPT", "EXPIRED"],
        [
            [
                str(run.id),
                run.task_path,
                run.queue_name,
                run.worker_id,
                str(run.attempt),
                f"{_duration(run.expired_for)} ago",
            ]
            for run in orphans
        ],
        numeric={0, 4},
        empty="none",
    )
    lines += _unknown(status["unknown_tasks"])
    lines += ["", f"Batches: {status['open_batches']:,} open (members still to end)"]
    return lines


def _capped(queues: list[QueueOverview]) -> list[str]:
    """What a "+" in the table means, when a state had more runs than the count's cap."""
    capped = queues[0].capped if queues else ()
    if not capped:
        return []
    states = ", ".join(capped)
    return [
        f"  ({states}: more than {queues[0].count_cap:,} runs in all queues; counting stopped "
        "there, so each figure marked + is a floor. TASKMILL_COUNT_CAP sets the cap.)"
    ]


def _unknown(unknown: UnknownTasks) -> list[str]:
    """The runs no worker running this code can run: their task path is neither a task's
    nor an alias (docs/runs.md#task-aliases)."""
    count = f"{COUNT_CAP:,}+" if unknown.more else f"{unknown.runs:,}"
    lines = ["", f"Runs of unknown tasks: no task registered at their path ({count})"]
    lines += _table(
        ["TASK", "RUNS"],
        [[path, f"{runs:,}"] for path, runs in unknown.paths.items()],
        numeric={1},
        empty="none",
    )
    if not unknown.complete:
        lines.append("  (the runs name too many task paths: only the first ones were read)")
    return lines


def _limits(reports: dict[str, QueueReport]) -> list[str]:
    """The queues with limits, or with runs held back by a task's limit."""
    shown = [
        report
        for report in reports.values()
        if report.limited or report.set_at_run_time or report.held
    ]
    lines = ["", f"Limits: queues limited or holding runs back ({len(shown)})"]
    return lines + _table(
        ["QUEUE", "LIMITS", "FROM", "IN USE", "HELD", "HELD BACK MOST BY"],
        [
            [
                report.name,
                limits_text(report),
                source_text(report) or "-",
                (in_use_text(report) or "-") + (" (at its limit)" if report.at_limit else ""),
                f"{report.held:,}",
                ", ".join(f"{key.label} ({key.held:,} {key.kind})" for key in report.top_held_keys)
                or "-",
            ]
            for report in shown
        ],
        numeric={4},
        empty="none",
    )


def _table(
    headers: list[str], rows: Sequence[list[str]], *, numeric: Collection[int] = (), empty: str
) -> list[str]:
    if not rows:
        return [f"  {empty}"]
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return ("  " + "  ".join(padded)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _duration(seconds: float | None) -> str:
    """A short human duration: 0.4s, 45s, 2m05s, 3h02m, 2d04h."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // smaller_size:02d}{smaller}"
    return f"{whole}s"


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.get_current_timezone()).isoformat(timespec="seconds")
