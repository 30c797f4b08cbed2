"""The worker as its heartbeat sees it: the few calls the heartbeat's thread makes into the
worker, and nothing else. The heartbeat (taskmill.worker.duties.heartbeat) never touches the
claim loop's state; what it may read or change goes through here, under the locks of the
collaborators that own it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..logs import ATTEMPT, RUN_ID

if TYPE_CHECKING:
    from .claimer import Claimer
    from .executor import Executor
    from .flushing import OutcomeWriter
    from .held import HeldRuns
    from .stopping import GracefulStop

logger = logging.getLogger("taskmill.worker")


class HeartbeatPort:
    def __init__(
        self,
        *,
        held: HeldRuns,
        executor: Executor,
        claimer: Claimer,
        writer: OutcomeWriter,
        graceful_stop: GracefulStop,
        wake: threading.Event,
    ) -> None:
        self._held = held
        self._executor = executor
        self._claimer = claimer
        self._writer = writer
        self._graceful_stop = graceful_stop
        self._wake = wake

    def held_runs(self) -> tuple[dict[int, int], set[int], set[int]]:
        """Id -> attempt of every run held, the ids of those not started, and those of
        atomic tasks running (their rows are locked by their transaction)."""
        atomic = self._executor.atomic_ids()
        held = self._held.snapshot()
        # Last: from here on, the heartbeat must end its round (marks_written) whatever happens.
        return held, self._executor.begin_marks(), atomic

    def marks_written(self, written: set[int]) -> None:
        self._executor.end_marks(written)

    def stop_runs(self, run_ids: Iterable[int], snapshot: dict[int, int], reason: str) -> None:
        """Stop these runs' attempts (lost to us, or asked to stop), each only if this worker
        still holds it under the attempt the heartbeat saw in ``snapshot``: a run written
        back meanwhile, or claimed again since, is not the one that was lost."""
        held = self._held.still_held(run_ids, snapshot)
        for run_id, attempt in held.items():
            logger.warning(
                "Stopping run %s attempt %s: %s",
                run_id,
                attempt,
                reason,
                extra={RUN_ID: run_id, ATTEMPT: attempt},
            )
        if held:
            self._executor.drop(held)
            self._executor.stop_started(held)

    def fence(self) -> None:
        """No heartbeat for most of a lease: claim nothing, stop what runs."""
        self._claimer.fenced = True
        self._executor.fence()

    def unfence(self) -> None:
        self._executor.unfence()
        self._claimer.fenced = False
        self._wake.set()

    @property
    def processed(self) -> int:
        return self._writer.processed

    @property
    def stopping(self) -> bool:
        return self._graceful_stop.requested

    def request_stop(self) -> None:
        self._graceful_stop.request()
