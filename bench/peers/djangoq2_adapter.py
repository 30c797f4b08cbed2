"""django-q2 1.11 with its ORM broker (the database is the queue); its worker is qcluster."""

from __future__ import annotations

from common import main
from django_base import DjangoAdapter


class DjangoQ2Adapter(DjangoAdapter):
    name = "django-q2"
    bulk_supported = False  # async_task() one at a time; no bulk enqueue

    def __init__(self) -> None:
        super().__init__("django-q2")
        self.tables = ("django_q_ormq", "django_q_task")
        self.filled = 0
        self.concurrency = 1
        self.variant = "default"

    def reset(self) -> None:
        super().reset()
        self.filled = 0

    def enqueue_one(self) -> None:
        from django_q.tasks import async_task

        async_task("benchtasks.tasks.q2_noop")

    def fill(self, n: int, kind: str = "noop") -> None:
        from django.db import transaction
        from django_q.tasks import async_task

        with transaction.atomic():
            for _ in range(n):
                async_task("benchtasks.tasks.q2_noop")
        self.filled += n

    def enqueue_probe(self, k: int) -> None:
        from django_q.tasks import async_task

        async_task("benchtasks.tasks.q2_probe", k)

    def done_count(self) -> int:
        # A queue row is deleted once its task is done (acknowledged); successes are saved
        # only up to save_limit (250 by default), so the queue table is what is counted.
        return self.filled - self.count("SELECT COUNT(*) FROM django_q_ormq")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        self.concurrency, self.variant = concurrency, variant
        return self.manage("qcluster")

    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        env["BENCH_CONCURRENCY"] = str(self.concurrency)  # Q_CLUSTER workers (processes)
        if self.variant == "tuned":
            env["BENCH_Q2_POLL"] = "0.01"  # the ORM broker's poll, 0.2 s by default
        return env


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import djangoq2_adapter

    main(djangoq2_adapter.DjangoQ2Adapter())
