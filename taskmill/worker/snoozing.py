"""A task's own say over how its attempt ends: ``raise taskmill.Snooze(delay)`` ("not now, try
again later") and ``raise taskmill.Cancel(reason)`` ("this run should not run at all").

A snooze is an outcome like a retry's: the run is READY again, available ``delay`` after the
attempt ended (due at once, or staged when its time comes, as a retry is), its limit slots
freed in the same landing. Unlike a retry it writes no error, so it uses none of
``max_attempts`` and the backoff (which counts the errors: ``exceptions.task_failures``)
never sees it: a task that snoozes five times and then fails waits as long as one that never
snoozed (Oban's snoozes inflated the backoff until a retry landed days later). The attempt
number moves on all the same, since it is the fencing token; ``Run.snoozes`` counts the
snoozes apart, up to the task's ``max_snoozes``: the snooze past it fails the run
(``TooManySnoozes``), so a task that would snooze for ever ends.

A cancel ends the run CANCELLED, recorded as ``taskmill.cancel()`` records one (a
``RunCancelled`` entry with the reason) and never retried; what follows any cancel (its
``on_failure`` callback, its dependents cancelled) follows from its landing.

Decided on the thread that ran the body (a task thread, a child process, the event loop),
before any other reading of the exception: a ``Snooze`` raised while the task handled a
database error is the task's decision, not a database outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..db import Outcome
from ..exceptions import Cancel, RunCancelled, Snooze, TooManySnoozes, synthetic_error
from ..logs import run_fields
from ..status import RunStatus
from ..tasks import DEFAULT_MAX_SNOOZES, expiry_for
from .failures import chained, error_entry

if TYPE_CHECKING:
    from .attempt import Attempt

logger = logging.getLogger("taskmill.worker")


@dataclass(slots=True)
class Verdict:
    """How the task asked its attempt to end."""

    outcome: Outcome
    # What the worker reports as the attempt's failure (its log line, task_finished): the
    # cancel, or the snooze refused; None for a snooze, which is no failure.
    failure: BaseException | None = None


def own_verdict(attempt: Attempt, exc: BaseException, ended_at: datetime) -> Verdict | None:
    """The outcome the task asked for by raising ``exc``, or None when ``exc`` asks nothing
    (a failure, for the retry rules)."""
    if isinstance(exc, Snooze):
        return snoozed(attempt, exc, ended_at)
    if isinstance(exc, Cancel):
        error = synthetic_error(RunCancelled, exc.reason)
        return Verdict(final(attempt, RunStatus.CANCELLED, error, ended_at), exc)
    return None


def max_snoozes_for(attempt: Attempt) -> int:
    """The run's ``max_snoozes``: the call's (stored on the run), else the task's."""
    value = attempt.option("max_snoozes")
    return DEFAULT_MAX_SNOOZES if value is None else value


def snoozed(attempt: Attempt, exc: Snooze, ended_at: datetime) -> Verdict:
    """READY again ``exc.delay`` after the attempt ended, the snooze counted and nothing else
    written; or FAILED for good when the run has used its ``max_snoozes`` already."""
    run = attempt.run
    limit = max_snoozes_for(attempt)
    if run.snoozes >= limit:
        refused = chained(
            TooManySnoozes(
                f"snoozed {run.snoozes} times, max_snoozes is {limit}: this snooze fails the run"
            ),
            exc,
        )
        return Verdict(final(attempt, RunStatus.FAILED, error_entry(refused), ended_at), refused)
    outcome = Outcome(
        run_id=run.id,
        attempt=run.attempt,
        status=RunStatus.READY,
        finished_at=ended_at,
        errors=run.errors,
        available_at=ended_at + exc.delay,
        # Written only if a stop turns the snooze into a cancellation (finish_sql).
        expires_at=expiry_for(attempt.task, run.options, ended_at, RunStatus.READY),
        started_at=attempt.started_at,
        snoozes=run.snoozes + 1,
    )
    logger.debug(
        "Run %s (%s) attempt %d snoozed for %s (snooze %d of at most %d)",
        run.id,
        run.task_path,
        run.attempt,
        exc.delay,
        outcome.snoozes,
        limit,
        extra=run_fields(run),
    )
    return Verdict(outcome)


def final(attempt: Attempt, status: str, error: dict[str, str], ended_at: datetime) -> Outcome:
    """A final outcome (``status``) the task's own request decided, ``error`` added: no
    retry, whatever ``max_attempts`` says."""
    run = attempt.run
    return Outcome(
        run_id=run.id,
        attempt=run.attempt,
        status=status,
        finished_at=ended_at,
        errors=[*run.errors, error],
        expires_at=expiry_for(attempt.task, run.options, ended_at, status),
        started_at=attempt.started_at,
    )


__all__ = ["Verdict", "max_snoozes_for", "own_verdict"]
