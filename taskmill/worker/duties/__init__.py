"""A worker's periodic duties (Oban's plugins), all listed here, each a ``Duty``
(``base.py``) whose pass returns how long until it wants to run next:

- ``stager``: marks deferred runs due when their time comes. The worker's own loop drives
  it, between claims: what it finds is work for that loop to claim, and a hand-off from
  another thread would only delay the claim;
- ``releaser``: looks again at limits' keys whose time has come (a rate's window moving
  on), letting held-back runs go; the loop drives it too, for the same reason;
- ``heartbeat``: renews the leases of the runs this worker holds, learns of stop and
  shutdown requests (its own thread: nothing may starve it);
- ``lifeline``: rescues the runs of workers that died (their leases ran out);
- ``pruner``: deletes finished runs past their time-to-live, in small batches;
- ``batch sweeper``: repairs batches stalled by a member that vanished (lifeline, pruner and
  batch sweeper share a thread);
- ``scheduler``: fires due schedules (its own thread: a fire may wait for its time).

The others run on ``DutyThread``s, each with its own database connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils import timezone

from .base import Duty, DutyThread
from .batches import BatchSweeper
from .heartbeat import Heartbeat
from .lifeline import Lifeline
from .pruner import Pruner
from .releaser import Releaser
from .scheduler import SchedulerDuty
from .stager import Stager

if TYPE_CHECKING:
    from ...db import Engine
    from ..heartbeat_port import HeartbeatPort
    from ..loop import WorkerOptions

__all__ = ["Duty", "DutyThread", "WorkerDuties"]

# How often a worker looks for deferred runs that have come due (or each poll, if sooner).
STAGE_EVERY = 1.0


class WorkerDuties:
    """The duties of one worker: which run, and on which thread."""

    def __init__(
        self,
        worker_id: str,
        options: WorkerOptions,
        engine: Engine,
        port: HeartbeatPort,
        *,
        on_staged: Callable[[], None],
        on_rescued: Callable[[], None],
    ) -> None:
        database = options.database
        self.stager = Stager(engine, min(STAGE_EVERY, options.poll_interval), on_staged)
        self.next_stage = 0.0  # when the loop runs the stager next (monotonic)
        self.releaser = Releaser(database, on_staged)
        self.next_release = 0.0
        self.heartbeat = Heartbeat(port, worker_id, options, engine)
        self._heartbeat_thread = DutyThread("heartbeat", database, [self.heartbeat])
        self.threads: list[DutyThread] = []
        self.beating = options.duties  # off only in protocol tests (with lifeline and pruner)
        if options.duties:
            maintenance = [
                Lifeline(database, on_rescued=on_rescued),
                Pruner(database),
                BatchSweeper(database),
            ]
            self.threads += [self._heartbeat_thread, DutyThread("duties", database, maintenance)]
        if options.scheduler:
            scheduler = DutyThread("scheduler", database, [SchedulerDuty(database)], 10.0)
            self.threads.append(scheduler)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for thread in reversed(self.threads):
            thread.stop()
        if self.beating:
            self.heartbeat.unregister()  # after its last beat, which would say RUNNING

    def stage_if_due(self, now: float) -> None:
        """The loop's turn at the stager: at most once per interval (``now`` monotonic)."""
        if now < self.next_stage:
            return
        self.next_stage = now + self.stager.interval  # a pass that fails: again after that
        self.next_stage = now + self.stager.run(timezone.now())

    def release_if_due(self, now: float) -> None:
        """The loop's turn at the releaser, when it asked for it (``now`` monotonic)."""
        if now < self.next_release:
            return
        self.next_release = now + self.releaser.interval
        self.next_release = now + self.releaser.run(timezone.now())

    def kick_heartbeat(self) -> None:
        """A stop or shutdown request was announced: let the heartbeat learn it now."""
        self._heartbeat_thread.kick()
