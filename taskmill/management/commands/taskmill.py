"""``manage.py taskmill <subcommand>``: one command, one module per subcommand in taskmill.cli."""

from __future__ import annotations

import argparse
from importlib import import_module

from django.core.management.base import BaseCommand, CommandParser

SUBCOMMANDS = {
    "worker": "taskmill.cli.worker",
    "scheduler": "taskmill.cli.scheduler",
    "sync-schedules": "taskmill.cli.sync_schedules",
    "export-schedules": "taskmill.cli.export_schedules",
    "import-schedules": "taskmill.cli.import_schedules",
    "prune": "taskmill.cli.prune",
    "status": "taskmill.cli.status",
    "health": "taskmill.cli.health",
}

# Services started by a supervisor, maybe before the database: they wait for it.
WAITS_FOR_DATABASE = {"worker", "scheduler"}
# Reports: a database they cannot reach is their answer (exit status 2, one line), not a
# traceback from Django's system checks, which ask the server its version.
REPORTS_ON_DATABASE = {"status", "health"}


class Command(BaseCommand):
    help = "taskmill: run workers and manage the task queue."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=CommandParser
        )
        for name, module_path in SUBCOMMANDS.items():
            module = import_module(module_path)
            subparser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
            # `taskmill worker -v 2` reads naturally; Django only knows `taskmill -v 2 worker`.
            subparser.add_argument(
                "-v",
                "--verbosity",
                type=int,
                choices=[0, 1, 2, 3],
                default=argparse.SUPPRESS,
                help="0 quiet, 1 normal, 2 debug logs, 3 debug logs (default 1).",
            )
            module.add_arguments(subparser)

    def execute(self, *args, **options) -> object:
        # The long-running subcommands wait for their database before Django's system
        # checks, which ask the server its version and would crash on a database not up yet.
        if options.get("subcommand") in WAITS_FOR_DATABASE:
            from taskmill.cli.common import configure_logging, taskmill_backend, wait_for_database

            configure_logging(options.get("verbosity", 1))
            if options.get("supervisor_pid") is not None:
                # A supervised worker: first of all, never outlive the supervisor.
                from taskmill.worker.supervisor import stop_with_supervisor

                stop_with_supervisor(options["supervisor_pid"])
            wait_for_database(taskmill_backend(options.get("backend")).database)
        elif options.get("subcommand") in REPORTS_ON_DATABASE:
            from taskmill.cli.common import chosen_database, ensure_reachable

            ensure_reachable(chosen_database(options))
        return super().execute(*args, **options)

    def handle(self, *args, **options) -> None:
        module = import_module(SUBCOMMANDS[options["subcommand"]])
        module.handle(self, options)
