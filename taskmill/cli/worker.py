"""``manage.py taskmill worker``: run tasks until stopped."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from ..scheduler.loop import start_in_worker
from ..worker import Worker, WorkerInterrupted, WorkerOptions
from ..worker.reload import CodeWatcher, restart_process
from .common import (
    configure_logging,
    non_negative_float,
    positive_float,
    positive_int,
    taskmill_backend,
)
from .signals import StopSignals

HELP = "Run tasks from the queue; SIGINT/SIGTERM stop gracefully, a second one at once."


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--backend", help="The TASKS alias whose database to serve (default: the default one)."
    )
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        metavar="NAME",
        help="Take runs from this queue (repeatable; default: every queue).",
    )
    parser.add_argument(
        "--exclude-queue",
        dest="exclude_queues",
        action="append",
        default=[],
        metavar="NAME",
        help="Never take runs from this queue (repeatable).",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=1, help="Tasks run at once (default 1)."
    )
    parser.add_argument("--burst", action="store_true", help="Exit as soon as no run is ready.")
    parser.add_argument(
        "--max-tasks", type=positive_int, help="Exit after running this many tasks."
    )
    parser.add_argument("--label", default="", help="A name for this worker, in its worker id.")
    parser.add_argument(
        "--poll-interval",
        type=positive_float,
        default=1.0,
        metavar="SECONDS",
        help="Longest wait between checks for new runs when idle (default 1).",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=non_negative_float,
        default=30.0,
        metavar="SECONDS",
        help="On SIGTERM, how long running tasks may take before their runs are "
        "returned to the queue (default 30).",
    )
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="Do not fire schedules in this worker (by default each worker runs a scheduler "
        "thread; any number may run at once).",
    )
    parser.add_argument(
        "--reload",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Restart when code changes (default: on when DEBUG is true).",
    )


def build_options(options: dict[str, Any]) -> WorkerOptions:
    backend = taskmill_backend(options["backend"])
    queues = options["queues"]
    for name in [*(queues or []), *options["exclude_queues"]]:
        if backend.queues and name not in backend.queues:
            raise CommandError(
                f"Unknown queue {name!r}: backend {backend.alias!r} has the queues "
                f"{', '.join(sorted(backend.queues))}."
            )
    return WorkerOptions(
        database=backend.database,
        queues=tuple(dict.fromkeys(queues)) if queues else None,
        exclude_queues=tuple(options["exclude_queues"]),
        concurrency=options["concurrency"],
        burst=options["burst"],
        max_tasks=options["max_tasks"],
        label=options["label"],
        poll_interval=options["poll_interval"],
        shutdown_timeout=options["shutdown_timeout"],
    )


def run_worker(worker_options: WorkerOptions, *, reload: bool, scheduler: bool = True) -> None:
    worker = Worker(worker_options)
    watcher = CodeWatcher(lambda path: worker.request_stop()) if reload else None

    def interrupt() -> None:  # a second signal: leave now
        raise WorkerInterrupted()

    StopSignals(worker.request_stop, on_again=interrupt).install()
    if watcher is not None:
        watcher.start()
    stop_scheduler = start_in_worker(worker_options.database) if scheduler else None
    try:
        code = worker.run()
    finally:
        if stop_scheduler is not None:
            stop_scheduler()
    if watcher is not None and watcher.changed is not None and code == 0:
        restart_process()
    if worker.abandoned_tasks:
        # Threads still inside abandoned tasks would keep the interpreter alive.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def check_migrations(database: str) -> None:
    """Refuse to start on a database whose taskmill tables are behind the code: the worker
    would otherwise retry failing queries forever. An unreachable database is not refused
    here: the worker waits for it, saying so. (Cheap: one query and a directory listing,
    not Django's migration graph.)"""
    import pkgutil

    from django.db.migrations.recorder import MigrationRecorder

    from .. import migrations

    needed = {module.name for module in pkgutil.iter_modules(migrations.__path__)}
    try:
        applied = {
            name
            for app, name in MigrationRecorder(connections[database]).applied_migrations()
            if app == "taskmill"
        }
    except DatabaseError:
        return
    finally:
        connections[database].close()
    missing = sorted(needed - applied)
    if missing:
        raise CommandError(
            f"The database {database!r} is missing {len(missing)} taskmill migration(s) the "
            f"worker needs ({', '.join(missing)}). Run `python manage.py migrate` first."
        )


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    configure_logging(options["verbosity"])
    worker_options = build_options(options)
    check_migrations(worker_options.database)
    reload = options["reload"] if options["reload"] is not None else settings.DEBUG
    run_worker(worker_options, reload=reload, scheduler=not options["no_scheduler"])
