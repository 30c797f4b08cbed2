"""A sync task with a timeout runs in a child process of the worker's pool (processes.py;
the child's program is child.py): the only way to stop a blocking call is to kill the
process running it.

Both sides are here: ``run_in_child``, the worker's, sends the run and reads back the
outcome, or learns how the child was killed (a timeout, a stop, a crash); ``serve_attempt``,
the child's handler, runs the attempt on its main thread. What crosses the pipe is JSON,
never pickle.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db import connections

from ...db import ClaimedRun, Outcome
from ...db.records import CLAIMED_DATETIME_COLUMNS, Landed, load_datetime
from ...exceptions import RunCancelled, TaskTimeout
from ..attempt import Attempt, Completed
from ..execution import RaisedInChild, TaskCrashed
from .thread import call_here

# What the pool's children call (child.py imports it by this path).
CHILD_HANDLER = "taskmill.worker.runners.child_process:serve_attempt"

_OUTCOME_DATETIMES = ("finished_at", "available_at", "expires_at", "started_at")


def run_in_child(attempt: Attempt, pool: Any, timeout: float) -> Completed:
    """The worker's side: the attempt in a child of ``pool``, killed past ``timeout`` or
    when the attempt's stop is requested."""
    from ..processes import Killed  # the pool's module: loaded with the pool, on first need

    run = attempt.run
    payload = {"database": attempt.database, "run": run_to_json(run)}
    reply = pool.call(payload, timeout=timeout, stop=attempt.stop_event)
    duration = attempt.duration()
    if isinstance(reply, Killed):
        if reply.reason == "timeout":
            exc: BaseException = TaskTimeout(
                f"Task {run.task_path} ran past its timeout of {timeout:g}s; its "
                f"process (pid {reply.pid}) was killed."
            )
        elif reply.reason == "stopped":
            exc = RunCancelled(f"stopped on request; its process (pid {reply.pid}) was killed")
        else:
            exc = TaskCrashed(
                f"The process running the task (pid {reply.pid}) died: {reply.detail}"
            )
        return attempt.failed(exc, duration)
    if "__child_error__" in reply:
        return attempt.failed(TaskCrashed(reply["__child_error__"]["traceback"]), duration)
    outcome = outcome_from_json(reply["outcome"])
    raised = reply.get("failure") and outcome.errors and outcome.errors[-1]["traceback"]
    completed = Completed(
        run,
        attempt.task,
        outcome,
        reply["duration"],
        failure=reply.get("failure"),
        exception=RaisedInChild(raised) if raised else None,
    )
    if reply.get("landed"):
        completed.landed = Landed(**reply["landed"])
        completed.recorded = True
    return completed


def serve_attempt(payload: dict[str, Any]) -> dict[str, Any]:
    """The child's handler: run one attempt here and send back its outcome.

    Signals (task_started) were sent by the worker; the child only calls the task.
    """
    run = ClaimedRun(**_with_datetimes(payload["run"], CLAIMED_DATETIME_COLUMNS))
    attempt = Attempt(run, database=payload["database"])
    refused = attempt.prepare()
    completed = refused or call_here(attempt)
    connections.close_all()
    return {
        "outcome": outcome_to_json(completed.outcome),
        "duration": completed.duration,
        "landed": asdict(completed.landed) if completed.landed else None,
        "failure": completed.failure,
    }


# -- the JSON across the pipe -----------------------------------------------------------------


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


__all__ = [
    "CHILD_HANDLER",
    "outcome_from_json",
    "outcome_to_json",
    "run_in_child",
    "run_to_json",
    "serve_attempt",
]
