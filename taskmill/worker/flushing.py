"""Writing outcomes back: collect what the executor reported, decide when to write, write a
batch (fenced, with its rollups, callbacks and dependents), then send ``task_finished``.

When the worker also wants more runs at that moment, its claim goes into the outcomes'
transaction: one commit for both instead of two, which is most of what a batch of quick
tasks costs the database. A mixin of the worker (``taskmill.worker.loop.Worker``), whose
state it reads and changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from .attempt import Completed
from .outcomes import key_of, send_finished, write_outcomes

if TYPE_CHECKING:
    from ..db import ClaimedRun, Engine
    from .loop import Prefetch, WorkerOptions

logger = logging.getLogger("taskmill.worker")

# Outcomes are written when this many have piled up...
FLUSH_BATCH = 200
# ...or when the oldest has waited this long, so results show up promptly.
FLUSH_DELAY = 0.02


class OutcomeFlushing:
    """The worker's outcome batches."""

    # Set by the worker (see taskmill.worker.loop.Worker.__init__).
    options: WorkerOptions
    engine: Engine
    processed: int
    _done: deque[Completed]
    _unflushed: list[Completed]
    _oldest_unflushed: float
    _outstanding: int
    _stopping: bool
    _fenced: bool
    _maybe_ready: bool
    _prefetch: Prefetch
    _held: dict[int, int]
    _held_lock: threading.Lock
    _finish_in_doubt: set[tuple[int, int]]

    def _collect_done(self) -> None:
        while self._done:
            completed = self._done.popleft()
            self._outstanding -= 1
            self._prefetch.observe(completed.duration)
            if not self._unflushed:
                self._oldest_unflushed = time.monotonic()
            self._unflushed.append(completed)

    def _should_flush(self) -> bool:
        if not self._unflushed:
            return False
        return (
            len(self._unflushed) >= FLUSH_BATCH
            or time.monotonic() - self._oldest_unflushed >= FLUSH_DELAY
            or not self._outstanding
            or self._stopping
        )

    def _flush(self, claim: bool = False) -> int | None:
        """Write the outcomes collected so far. With ``claim``, claim more runs in the same
        transaction; return how many it took, or None when it did not claim (nothing to
        claim for, or nothing to write: the caller claims on its own)."""
        limit = self._claim_limit() if claim and not self._fenced else 0
        if limit > 0:
            # Before the batch is taken: this may fail (it returns the runs of a claim in
            # doubt), and the outcomes must still be there for the next try.
            self._prepare_claim()
        batch = self._unflushed
        self._unflushed = []
        claimed: list[ClaimedRun] | None = None

        def claim_more() -> None:
            nonlocal claimed
            claimed = self._claim_runs(limit)

        # Under the held lock: a heartbeat must not judge a run lost from the outcome this
        # worker is writing, so it sees the run either held and RUNNING, or let go.
        with self._held_lock:
            try:
                landed = write_outcomes(
                    self.engine,
                    self.options.database,
                    batch,
                    self._finish_in_doubt,
                    claim=claim_more if limit > 0 else None,
                )
            except BaseException:
                self._unflushed = batch + self._unflushed  # keep them: nothing is lost
                # The write may have committed all the same: the next one checks.
                self._finish_in_doubt.update(key_of(c) for c in batch)
                if limit > 0:
                    self._claim_failed()
                raise
            for completed in batch:
                # The attempt's own hold only: a stale outcome (an attempt taken away, then
                # claimed back) must not make the worker forget the newer attempt it runs.
                if self._held.get(completed.run.id) == completed.run.attempt:
                    del self._held[completed.run.id]
                self._finish_in_doubt.discard(key_of(completed))
        # Committed: the claimed runs are ours to start.
        taken = None if claimed is None else self._took(claimed, limit)
        if limit > 0 and claimed is None:
            self._maybe_ready = True  # not claimed after all: the caller claims
        for completed in batch:
            if completed.landed is not None:
                landed[key_of(completed)] = completed.landed
        self.processed += len(landed)
        for completed in batch:
            written = landed.get(key_of(completed))
            if written is None:
                logger.warning(
                    "Outcome of run %s attempt %d discarded: the run was taken over meanwhile",
                    completed.run.id,
                    completed.run.attempt,
                )
                continue
            if written.status == "READY":
                self._maybe_ready = True  # a retry due now (or staged later)
            elif completed.task is not None:
                send_finished(completed, written.status)
        return taken
