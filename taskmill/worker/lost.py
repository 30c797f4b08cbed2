"""The one lost-attempt policy: an attempt that ended through no fault of its task counts as
lost, and its run goes again whatever its retry settings, up to TASKMILL_MAX_LOST_ATTEMPTS
lost attempts, after which the run fails: a task that crashes its worker (or breaks its own
connection) every time must not loop forever.

Three ends apply it, none deciding it a second way: the lifeline's rescue of a run whose
lease ran out (duties/lifeline.py), an attempt stopped by its worker's self-fence
(``lose_fenced``), and a body failed by the database (interruptions.py). When the run goes
again is theirs to say: the worker backs off (``lost_backoff``: the database may be coming
back), the rescue makes it due at once (a whole lease has passed already).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ..compat import BaseTask
from ..conf import setting
from ..db import ClaimedRun, Outcome
from ..exceptions import WorkerLost, lost_attempts, synthetic_error
from ..logs import OUTCOME, run_fields
from ..status import RunStatus
from ..tasks import expiry_for

if TYPE_CHECKING:
    from .attempt import Completed

logger = logging.getLogger("taskmill.worker")

# The backoff of the n-th lost attempt: about a second, doubling, at most this.
_LOST_BACKOFF_CAP = 30.0


@dataclass(frozen=True, slots=True)
class LostAttempt:
    """The verdict on one more lost attempt of a run."""

    count: int  # the run's lost attempts, this one included
    final: bool  # the limit reached: the run fails instead of going again

    def because(self, why: str) -> str:
        """What lost the attempt, and what follows: the message recorded as ``WorkerLost``."""
        if self.final:
            return f"{why}; {self.count} lost attempts, the limit: the run fails"
        return f"{why}; the run goes again"


def lost_attempt(errors: list[dict[str, Any]]) -> LostAttempt:
    """The verdict on a run whose ``errors`` so far are these, now that one more attempt
    was lost."""
    count = lost_attempts(errors) + 1
    return LostAttempt(count, count >= int(setting("TASKMILL_MAX_LOST_ATTEMPTS")))


def lost_outcome(
    run: ClaimedRun,
    task: BaseTask | None,
    error: dict[str, str] | str,
    *,
    now: datetime | None = None,
    started_at: datetime | None = None,
) -> Outcome:
    """A lost attempt of a run this worker holds: READY again after a short backoff, or
    FAILED at the TASKMILL_MAX_LOST_ATTEMPTS-th lost attempt.

    ``error`` is the entry to record (the task's own exception, marked lost), or a message
    saying why the attempt was lost (its worker fenced itself), recorded as ``WorkerLost``
    and logged here (the worker's attempt log logs the task's own exceptions). ``now`` is
    when the attempt ended (default: now) and ``started_at`` when its body began.
    """
    now = now or timezone.now()
    lost = lost_attempt(run.errors)
    status = RunStatus.FAILED if lost.final else RunStatus.READY
    if isinstance(error, str):
        message = lost.because(error)
        logger.warning("Run %s: %s", run.id, message, extra=run_fields(run, **{OUTCOME: status}))
        error = synthetic_error(WorkerLost, message)
    return Outcome(
        run_id=run.id,
        attempt=run.attempt,
        status=status,
        finished_at=now,
        errors=[*run.errors, error],
        available_at=None if lost.final else now + timedelta(seconds=lost_backoff(lost.count)),
        # Not final: the expiry a stop asked for meanwhile would need (expiry_for).
        expires_at=expiry_for(task, run.options, now, status),
        started_at=started_at,
    )


def lost_backoff(lost: int) -> float:
    """Seconds before the run goes again after its ``lost``-th lost attempt.

    Long enough for a restarted server to come back, short next to a failover; jittered, so
    that the hundred runs one outage interrupted do not all come back in the same instant.
    """
    return random.uniform(0.5, 1.0) * min(2.0 ** (lost - 1), _LOST_BACKOFF_CAP)


def lose_fenced(completed: Completed) -> None:
    """An attempt its worker stopped by fencing itself (no heartbeat) ends lost: neither a
    failure nor a cancellation, since the fence was not the task's doing. Unless it wrote
    its own outcome (atomic), or succeeded anyway: then that outcome stands."""
    if completed.recorded or completed.outcome.status == RunStatus.SUCCESSFUL:
        return
    run = completed.run
    completed.outcome = lost_outcome(
        run,
        completed.task,
        f"its worker fenced itself (no heartbeat) while attempt {run.attempt} ran",
        started_at=completed.outcome.started_at,
    )
    completed.failure = completed.exception = None  # lost_outcome said why


__all__ = ["LostAttempt", "lose_fenced", "lost_attempt", "lost_backoff", "lost_outcome"]
