"""``manage.py taskmill worker``: run tasks until stopped."""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from .. import middleware, registry
from ..logs import identify_worker
from ..worker import Worker, WorkerInterrupted, WorkerOptions
from ..worker.loop import make_worker_id
from ..worker.reload import CodeWatcher, restart_process
from ..worker.supervisor import Supervisor
from .common import (
    add_log_format_argument,
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
        "--backend",
        help="The TASKS alias whose runs to take (default: the default one). Runs enqueued "
        "through another alias are left to that alias's workers, even on the same database.",
    )
    parser.add_argument(
        "--all-backends",
        action="store_true",
        help="Take the runs of every TASKS alias whose runs are in the --backend's database.",
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
        help="Restart when code changes (default: on when DEBUG is true; off with --processes).",
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        metavar="N",
        help="Run N worker processes, each with --concurrency slots, under a supervisor that "
        "restarts one that dies (default 1: this process is the worker).",
    )
    add_log_format_argument(parser)
    # Given by the supervisor to the children it starts, not by people.
    parser.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)


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
        backends=None if options["all_backends"] else (backend.alias,),
        queues=tuple(dict.fromkeys(queues)) if queues else None,
        exclude_queues=tuple(options["exclude_queues"]),
        concurrency=options["concurrency"],
        burst=options["burst"],
        max_tasks=options["max_tasks"],
        label=options["label"],
        poll_interval=options["poll_interval"],
        shutdown_timeout=options["shutdown_timeout"],
        scheduler=not options["no_scheduler"],
        listen_database=backend.listen_database,
        worker_id=options.get("worker_id"),
    )


def identify_process(options: dict[str, Any]) -> None:
    """Take this worker process's id before anything is logged (a wait for the database,
    the system checks), and put it on every line from then on. A supervisor is no worker:
    each of its children takes its own."""
    if options["processes"] > 1:
        return
    options["worker_id"] = make_worker_id(options["label"])
    identify_worker(options["worker_id"])


def run_worker(
    worker_options: WorkerOptions,
    *,
    reload: bool,
    supervised: bool = False,
) -> None:
    worker = Worker(worker_options)
    identify_worker(worker.id)  # already, unless the command's execute was bypassed
    watcher = CodeWatcher(lambda path: worker.request_stop()) if reload else None

    def interrupt() -> None:  # a second signal: leave now
        raise WorkerInterrupted()

    if supervised:
        # One stop may reach a supervised worker twice (from its supervisor, and from a
        # terminal or a service manager that signals the whole group): SIGTERM and SIGINT
        # only ever stop it gracefully, and its supervisor escalates with SIGQUIT.
        StopSignals(worker.request_stop).install()
        signal.signal(signal.SIGQUIT, lambda signum, frame: interrupt())
    else:
        StopSignals(worker.request_stop, on_again=interrupt).install()
    if watcher is not None:
        watcher.start()
    code = worker.run()
    if watcher is not None and watcher.changed is not None and code == 0:
        restart_process()
    if supervised:
        # Stopped: the supervisor's relay of a stop this worker already heard from the
        # terminal may still be on its way. Python gives its own handlers back to the system
        # while the interpreter shuts down, so that late SIGTERM would kill a worker that
        # stopped cleanly ("killed by SIGTERM" instead of exit 0); ignored signals stay
        # ignored through the shutdown.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def child_command(options: dict[str, Any], label: str) -> list[str]:
    """The command line of one of the supervisor's children: this worker's options, one
    process, a label of its own. ``python -m django`` with the settings module in the
    environment runs the same project as ``manage.py`` does."""
    argv = [sys.executable, "-m", "django", "taskmill", "worker", "--no-reload"]
    argv += ["--supervisor-pid", str(os.getpid()), "--label", label]
    argv += ["--verbosity", str(options["verbosity"])]
    argv += ["--concurrency", str(options["concurrency"])]
    argv += ["--poll-interval", repr(options["poll_interval"])]
    argv += ["--shutdown-timeout", repr(options["shutdown_timeout"])]
    if options["log_format"]:  # else the child reads the same TASKMILL_LOG_FORMAT
        argv += ["--log-format", options["log_format"]]
    if options["backend"]:
        argv += ["--backend", options["backend"]]
    if options["all_backends"]:
        argv.append("--all-backends")
    for name in options["queues"] or []:
        argv += ["--queue", name]
    for name in options["exclude_queues"]:
        argv += ["--exclude-queue", name]
    if options["max_tasks"] is not None:
        argv += ["--max-tasks", str(options["max_tasks"])]
    if options["burst"]:
        argv.append("--burst")
    if options["no_scheduler"]:
        argv.append("--no-scheduler")
    if options.get("traceback"):
        argv.append("--traceback")
    return argv


def supervise(options: dict[str, Any]) -> int:
    if not settings.SETTINGS_MODULE:
        raise CommandError(
            "--processes starts each worker process with `python -m django`, which needs "
            "a settings module (DJANGO_SETTINGS_MODULE), not settings.configure()."
        )
    # The parent's import path, so each child imports the same project the same way
    # (manage.py's directory, --pythonpath).
    path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE, "PYTHONPATH": path}
    # The supervisor needs no database: its children each open their own connections.
    connections.close_all()
    supervisor = Supervisor(
        lambda label: child_command(options, label),
        options["processes"],
        label=options["label"],
        burst=options["burst"],
        shutdown_timeout=options["shutdown_timeout"],
        env=env,
    )
    return supervisor.run()


def check_middleware() -> None:
    """Build the worker middleware's chains now: a factory that cannot serve sync tasks, or
    async ones when the project has any, stops the worker here, not every attempt."""
    some_async = None
    try:
        middleware.chain(asynchronous=False)
        registry.autodiscover()
        some_async = next(
            (
                path
                for path, task in sorted(registry.registered_tasks().items())
                if inspect.iscoroutinefunction(task.func)
            ),
            None,
        )
        if some_async is not None:
            middleware.chain(asynchronous=True)
    except ImproperlyConfigured as exc:
        where = f" ({some_async} is an async task)" if some_async else ""
        raise CommandError(f"{exc}{where}") from exc


def handle(command: BaseCommand, options: dict[str, Any]) -> None:
    configure_logging(options["verbosity"], options["log_format"])
    worker_options = build_options(options)
    processes = options["processes"]
    if processes > 1 and options["reload"]:
        raise CommandError(
            "--reload cannot be combined with --processes: restart the supervisor, or send "
            "it SIGHUP to restart its worker processes with the new code."
        )
    check_migrations(worker_options.database)
    check_middleware()
    if processes > 1:
        code = supervise(options)
        if code:
            raise SystemExit(code)
        return
    reload = options["reload"] if options["reload"] is not None else settings.DEBUG
    run_worker(
        worker_options,
        reload=reload,
        supervised=options["supervisor_pid"] is not None,
    )
