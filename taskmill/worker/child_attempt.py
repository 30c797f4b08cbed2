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

_OUTCOME_DATETIMES = ("finished_at", "available_at", "expires_at", "started_at")


def _as_json(record: Any, datetimes: tuple[str, ...]) -> dict[str, Any]:
    """A dataclass's fields, its datetimes as ISO text."""
    values = asdict(record)
    for name in datetimes:
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return values


def _with_datetimes(values: dict[str, Any], datetimes: tuple[str, ...]) -> dict[str, Any]:
    for name in datetimes:
        values[name] = load_datetime(values[name])
    return values


def run_to_json(run: ClaimedRun) -> dict[str, Any]:
    return _as_json(run, CLAIMED_DATETIME_COLUMNS)


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    return _as_json(outcome, _OUTCOME_DATETIMES)


def outcome_from_json(values: dict[str, Any]) -> Outcome:
    return Outcome(**_with_datetimes(values, _OUTCOME_DATETIMES))


def run_in_child(payload: dict[str, Any]) -> dict[str, Any]:
    """The child process's handler: run one attempt here and send back its outcome.

    Signals (task_started) were sent by the worker; the child only calls the task.
    """
    run = ClaimedRun(**_with_datetimes(payload["run"], CLAIMED_DATETIME_COLUMNS))
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
