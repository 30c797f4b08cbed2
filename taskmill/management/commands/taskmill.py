"""``manage.py taskmill <subcommand>``: one command, one module per subcommand in taskmill.cli."""

from __future__ import annotations

from importlib import import_module

from django.core.management.base import BaseCommand, CommandParser

SUBCOMMANDS = {
    "worker": "taskmill.cli.worker",
    "scheduler": "taskmill.cli.scheduler",
    "sync-schedules": "taskmill.cli.sync_schedules",
    "export-schedules": "taskmill.cli.export_schedules",
    "import-schedules": "taskmill.cli.import_schedules",
}


class Command(BaseCommand):
    help = "taskmill: run workers and manage the task queue."

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", required=True, parser_class=CommandParser
        )
        for name, module_path in SUBCOMMANDS.items():
            module = import_module(module_path)
            subparser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(subparser)

    def handle(self, *args, **options) -> None:
        module = import_module(SUBCOMMANDS[options["subcommand"]])
        module.handle(self, options)
