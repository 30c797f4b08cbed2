"""What the Django-based adapters share: settings, migrate, SQL helpers, the manage command."""

from __future__ import annotations

import os
import sys
from typing import Any

from common import Adapter


class DjangoAdapter(Adapter):
    tables: tuple[str, ...] = ()

    def __init__(self, peer: str) -> None:
        os.environ["BENCH_PEER"] = peer
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
        import django

        django.setup()

    def setup(self) -> None:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def reset(self) -> None:
        from django.db import connection

        if connection.vendor == "postgresql":
            self.sql(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY CASCADE")
        else:
            for table in self.tables:
                self.sql(f"DELETE FROM {table}")

    def count(self, statement: str) -> int:
        return int(self.sql(statement)[0][0])

    def manage(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "django", *args]

    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        env["DJANGO_SETTINGS_MODULE"] = "djsettings"
        return env

    def close(self) -> None:
        from django.db import connections

        connections.close_all()
