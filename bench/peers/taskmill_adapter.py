"""taskmill: the system under test, from the repository (run in the project's venv)."""

from __future__ import annotations

import subprocess

from common import MEASURES, main
from django_base import DjangoAdapter

KINDS = {"noop": "noop", "cpu": "cpu10", "sleep": "sleep10"}


class TaskmillAdapter(DjangoAdapter):
    name = "taskmill"

    def __init__(self) -> None:
        super().__init__("taskmill")
        from benchtasks import tasks as djtasks

        from taskmill.models import Run

        self.t = djtasks
        self.tables = (Run._meta.db_table,)
        self.run_table = Run._meta.db_table

    def enqueue_one(self) -> None:
        self.t.noop.enqueue()

    def enqueue_bulk(self, n: int) -> None:
        self.t.noop.enqueue_many([((), {})] * n)

    def fill(self, n: int, kind: str = "noop") -> None:
        name, _, arg = kind.partition(":")
        if name in ("keyed", "unkeyed", "clustered"):
            # n runs over `arg` keys: in turn (key i % K: a claim's batch meets each key
            # once), or in blocks (key i*K // n: a batch meets a few keys, each many times)
            keys = int(arg)
            task = self.t.unkeyed if name == "unkeyed" else self.t.keyed
            spread = (lambda i: i * keys // n) if name == "clustered" else (lambda i: i % keys)
            task.enqueue_many([((), {"key": f"k{spread(i)}"}) for i in range(n)])
        elif name == "batched":  # one batch of n no-ops
            import taskmill

            with taskmill.batch(description="bench"):
                self.t.noop.enqueue_many([((), {})] * n)
        elif name in ("nap", "nap_limited"):  # sleeping `arg` ms, in a limited queue or not
            getattr(self.t, name).enqueue_many([((int(arg),), {})] * n)
        else:
            getattr(self.t, KINDS[kind]).enqueue_many([((), {})] * n)

    def enqueue_probe(self, k: int) -> None:
        self.t.probe.enqueue(k)

    def done_count(self) -> int:
        return self.count(f"SELECT COUNT(*) FROM {self.run_table} WHERE status = 'SUCCESSFUL'")

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        cmd = self.manage("taskmill", "worker", "--no-reload", "--concurrency", str(concurrency))
        if variant.startswith("processes"):
            cmd += ["--processes", variant.removeprefix("processes")]
        return cmd


def has_processes_option(adapter: TaskmillAdapter) -> bool:
    """`taskmill worker --processes N` is being built elsewhere: measure it only if there."""
    out = subprocess.run(
        adapter.manage("taskmill", "worker", "--help"),
        env=adapter.worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return "--processes" in out


if __name__ == "__main__":
    # imported by name, so that its tasks have the import path the worker resolves
    import taskmill_adapter

    MEASURES["has_processes"] = lambda a, p: taskmill_adapter.has_processes_option(a)
    main(taskmill_adapter.TaskmillAdapter())
