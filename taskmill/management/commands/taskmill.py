"""``manage.py taskmill <subcommand>``: one command, one module per subcommand in taskmill.cli."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from importlib import import_module

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    OutputWrapper,
    SystemCheckError,
)

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

    # Whether the lines this command logs are JSON (--log-format json): then what Django would
    # print around them (system check warnings, a CommandError) is logged as a line too.
    json_lines = False

    def execute(self, *args, **options) -> object:
        # The long-running subcommands wait for their database before Django's system
        # checks, which ask the server its version and would crash on a database not up yet.
        if options.get("subcommand") in WAITS_FOR_DATABASE:
            from taskmill.cli.common import configure_logging

            self.json_lines = configure_logging(
                options.get("verbosity", 1), options.get("log_format")
            )
            if self.json_lines and not options.get("force_color"):
                options["no_color"] = True  # no terminal colour codes inside JSON strings
            try:
                return self._start_service(*args, **options)
            except CommandError as exc:
                if not self.json_lines or not self._called_from_command_line:
                    raise
                if options.get("traceback"):
                    raise
                # As Django would print it: a SystemCheckError's text names itself.
                said = str(exc) if isinstance(exc, SystemCheckError) else f"CommandError: {exc}"
                logging.getLogger("taskmill").error("%s", said)
                sys.exit(exc.returncode)
        elif options.get("subcommand") in REPORTS_ON_DATABASE:
            from taskmill.cli.common import chosen_database, ensure_reachable

            ensure_reachable(chosen_database(options))
        return super().execute(*args, **options)

    def _start_service(self, *args, **options) -> object:
        from taskmill.cli.common import taskmill_backend, wait_for_database

        if options["subcommand"] == "worker":
            from taskmill.cli.worker import identify_process

            identify_process(options)
        if options.get("supervisor_pid") is not None:
            # A supervised worker: first of all, never outlive the supervisor.
            from taskmill.worker.supervisor import stop_with_supervisor

            stop_with_supervisor(options["supervisor_pid"])
        wait_for_database(taskmill_backend(options.get("backend")).database)
        return super().execute(*args, **options)

    def check(self, *args, **kwargs) -> None:
        if not self.json_lines:
            return super().check(*args, **kwargs)
        # Warnings are written to stderr as loose lines of text: logged as one JSON line
        # instead, among the others. (Errors raise SystemCheckError: execute logs it.)
        said = io.StringIO()
        stderr, self.stderr = self.stderr, OutputWrapper(said)
        try:
            super().check(*args, **kwargs)
        finally:
            self.stderr = stderr
        if said.getvalue().strip():
            logging.getLogger("taskmill").warning("%s", said.getvalue().strip())
        return None

    def handle(self, *args, **options) -> None:
        module = import_module(SUBCOMMANDS[options["subcommand"]])
        module.handle(self, options)
