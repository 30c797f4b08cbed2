"""What the engine contract suite shares: runs built and claimed through the engine itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from taskmill.db import ClaimedRun, Engine, NewRun, Outcome

NOOP = "tests.testapp.tasks.noop"
LEASE = dt.timedelta(minutes=5)


def new_run(**fields: Any) -> NewRun:
    """A READY run of the no-op task, due now; ``fields`` override any column."""
    now = fields.pop("now", None) or timezone.now()
    values: dict[str, Any] = {
        "task_path": NOOP,
        "backend": "default",
        "queue_name": "default",
        "priority": 0,
        "args": [],
        "kwargs": {},
        "enqueued_at": now,
        "run_after": None,
        "available_at": now,
    }
    values.update(fields)
    return NewRun(**values)


def insert(engine: Engine, *runs: NewRun, wake: set[str] | None = None) -> list[int]:
    engine.insert_runs(list(runs), wake or set())
    return [run.pk for run in runs]


def claim(
    engine: Engine,
    worker_id: str = "w",
    limit: int = 100,
    now: dt.datetime | None = None,
    **filters,
) -> list[ClaimedRun]:
    now = now or timezone.now()
    return engine.claim(
        worker_id=worker_id,
        limit=limit,
        now=now,
        lease_until=filters.pop("lease_until", now + LEASE),
        queues=filters.pop("queues", None),
        **filters,
    )


def outcome(run: ClaimedRun, status: str = "SUCCESSFUL", **fields: Any) -> Outcome:
    now = timezone.now()
    values: dict[str, Any] = {
        "run_id": run.id,
        "attempt": run.attempt,
        "status": status,
        "finished_at": now,
        "started_at": now,
    }
    values.update(fields)
    return Outcome(**values)
