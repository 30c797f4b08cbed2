"""The runs a worker holds: claimed, their outcome not written back yet. What the heartbeat
renews, and what a claim in doubt must not give back.

The worker's thread holds and lets go; the heartbeat's thread reads a snapshot. Each entry
is one attempt (run id -> attempt number): a run taken away and claimed back is held under
its newer attempt, which the stale attempt's outcome must not make the worker forget.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ..db import ClaimedRun


class HeldRuns:
    def __init__(self) -> None:
        self._attempts: dict[int, int] = {}
        self._lock = threading.Lock()

    def hold(self, runs: Iterable[ClaimedRun]) -> None:
        with self._lock:
            self._attempts.update((run.id, run.attempt) for run in runs)

    def let_go(self, runs: Iterable[ClaimedRun]) -> None:
        """Forget these attempts; a run held again under a newer attempt stays held."""
        with self._lock:
            self._forget(runs)

    @contextmanager
    def writing_back(self, runs: Iterable[ClaimedRun]) -> Iterator[None]:
        """Hold the lock while the block writes these runs' outcomes, and let them go if it
        succeeds: a heartbeat must not judge a run lost from the outcome this worker is
        writing, so it sees each either held and RUNNING, or let go."""
        with self._lock:
            yield
            self._forget(runs)

    def snapshot(self) -> dict[int, int]:
        """Run id -> attempt of every run held now."""
        with self._lock:
            return dict(self._attempts)

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._attempts)

    def still_held(self, run_ids: Iterable[int], snapshot: dict[int, int]) -> dict[int, int]:
        """Those of ``run_ids`` held now under the attempt ``snapshot`` gave them."""
        with self._lock:
            return {
                run_id: snapshot[run_id]
                for run_id in run_ids
                if run_id in snapshot and self._attempts.get(run_id) == snapshot[run_id]
            }

    def _forget(self, runs: Iterable[ClaimedRun]) -> None:
        attempts = self._attempts
        for run in runs:
            if attempts.get(run.id) == run.attempt:
                del attempts[run.id]
