"""django-tasks-db 0.13: Django's tasks API on a database table; its worker is db_worker."""

from __future__ import annotations

from common import main
from django_base import DjangoAdapter


class DtdbAdapter(DjangoAdapter):
    name = "django-tasks-db"
    bulk_supported = False  # no bulk API: the drain's queue is filled in one transaction
    max_concurrency = 1  # db_worker runs one task at a time

    def __init__(self) -> None:
        super().__init__("django-tasks-db")
        from benchtasks import tasks as djtasks
        from django_tasks_db.models import DBTaskResult

        self.t = djtasks
        self.table = DBTaskResult._meta.db_table
        self.tables = (self.table,)

    def enqueue_one(self) -> None:
        self.t.noop.enqueue()

    def fill(self, n: int, kind: str = "noop") -> None:
        from django.db import transaction

        with transaction.atomic():
            for _ in range(n):
                self.t.noop.enqueue()

    def enqueue_probe(self, k: int) -> None:
        self.t.probe.enqueue(k)

    def done_count(self) -> int:
        return self.count(f"SELECT COUNT(*) FROM {self.table} WHERE status = 'SUCCESSFUL'")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        # Default --interval is 1 s (the wait after finding the queue empty); "tuned" is 0.01.
        cmd = self.manage("db_worker", "--no-reload", "--verbosity", "0")
        if variant == "tuned":
            cmd += ["--interval", "0.01", "--no-startup-delay"]
        return cmd


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import dtdb_adapter

    main(dtdb_adapter.DtdbAdapter())
