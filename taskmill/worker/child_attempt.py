"""An attempt in a child process (a sync task with a timeout): the child's handler, and the
JSON that carries the run there and its outcome back (JSON only across the pipe, never
pickle). The worker's side is ``Attempt.run_in_child``; the process model is processes.py
and child.py.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db import connections

from ..db import ClaimedRun, Outcome
from ..db.records import CLAIMED_DATETIME_COLUMNS, load_datetime
from .execution import Attempt


def run_to_json(run: ClaimedRun) -> dict[str, Any]:
    values = asdict(run)
    for name in CLAIMED_DATETIME_COLUMNS:
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return values


_OUTCOME_DATETIMES = ("finished_at", "available_at", "expires_at", "started_at")


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    values = asdict(outcome)
    for name in _OUTCOME_DATETIMES:
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return values


def outcome_from_json(values: dict[str, Any]) -> Outcome:
    for name in _OUTCOME_DATETIMES:
        values[name] = load_datetime(values[name])
    return Outcome(**values)


def run_in_child(payload: dict[str, Any]) -> dict[str, Any]:
    """The child process's handler: run one attempt here and send back its outcome.

    Signals (task_started) were sent by the worker; the child only calls the task.
    """
    values = payload["run"]
    for name in CLAIMED_DATETIME_COLUMNS:
        values[name] = load_datetime(values[name])
    run = ClaimedRun(**values)
    attempt = Attempt(run, database=payload["database"])
    refused = attempt.prepare()
    completed = refused or attempt.call_here()
    connections.close_all()
    return {
        "outcome": outcome_to_json(completed.outcome),
        "duration": completed.duration,
        "landed": asdict(completed.landed) if completed.landed else None,
        "failure": completed.failure,
    }


__all__ = ["outcome_from_json", "outcome_to_json", "run_in_child", "run_to_json"]
