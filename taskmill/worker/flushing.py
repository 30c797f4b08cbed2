"""Writing outcomes back: collect what the executor reported, decide when to write, write a
batch (fenced, with its rollups, callbacks and dependents), then send ``task_finished``.

When the worker also wants more runs at that moment, its claim goes into the outcomes'
transaction: one commit for both instead of two, which is most of what a batch of quick
tasks costs the database.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from ..limits.gate import holds_slot
from ..logs import run_fields
from ..status import RunStatus
from .attempt import Completed
from .outcomes import key_of, send_finished, write_outcomes

if TYPE_CHECKING:
    from ..db import Engine
    from ..db.base import Landed
    from .claimer import Claimer
    from .held import HeldRuns
    from .outcomes import Key

logger = logging.getLogger("taskmill.worker")

# Outcomes are written when this many have piled up...
FLUSH_BATCH = 200
# ...or when the oldest has waited this long, so results show up promptly.
FLUSH_DELAY = 0.02


class OutcomeWriter:
    """The worker's outcome batches. ``reported`` is filled by the executor's threads; the
    rest is the worker's thread's."""

    def __init__(self, database: str, engine: Engine, held: HeldRuns, claimer: Claimer) -> None:
        self.database = database
        self.engine = engine
        self.held = held
        self.claimer = claimer
        self.reported: deque[Completed] = deque()  # appended to by the executor's threads
        self.unflushed: list[Completed] = []
        self.oldest = 0.0  # when the oldest of ``unflushed`` was collected (monotonic)
        self.processed = 0  # outcomes that landed
        # Whether an outcome in ``unflushed`` frees a limit's slot: written at once, with a
        # claim, so that a slot's next run never waits for a batch to fill up.
        self.frees_slots = False
        self._in_doubt: set[tuple[int, int]] = set()  # (run, attempt) of failed writes

    def collect(self) -> None:
        """Take what the executor reported: those runs are no longer out."""
        reported = self.reported
        if not reported:
            return
        if not self.unflushed:
            self.oldest = time.monotonic()
        unflushed = self.unflushed
        observe = self.claimer.prefetch.observe
        count = 0
        while reported:
            completed = reported.popleft()
            observe(completed.duration)
            unflushed.append(completed)
            count += 1
            if not self.frees_slots and holds_slot(completed.run, self.database):
                self.frees_slots = True
                self.claimer.maybe_ready = True  # the slot may let a held run go
        # Once for all: a task thread that reads the count meanwhile may skip a wake-up for
        # everything being back, which the loop sees itself before it sleeps (_sleep_for).
        self.claimer.came_back(count)

    def due(self, stopping: bool) -> bool:
        if not self.unflushed:
            return False
        return (
            self.frees_slots
            or len(self.unflushed) >= FLUSH_BATCH
            or time.monotonic() - self.oldest >= FLUSH_DELAY
            or not self.claimer.outstanding
            or stopping
        )

    def flush(self, claim: bool = False) -> int | None:
        """Write the outcomes collected so far. With ``claim``, claim more runs in the same
        transaction; return how many it took, or None when it did not claim (nothing to
        claim for, or nothing to write: the caller claims on its own)."""
        carried = self.claimer.carried() if claim else None
        batch, frees_slots = self.unflushed, self.frees_slots
        self.unflushed, self.frees_slots = [], False
        try:
            with self.held.writing_back(completed.run for completed in batch):
                landed = write_outcomes(
                    self.engine,
                    self.database,
                    batch,
                    self._in_doubt,
                    claim=carried,
                    worker_id=self.claimer.worker_id,
                )
        except BaseException:
            self.unflushed = batch + self.unflushed  # keep them: nothing is lost
            self.frees_slots = self.frees_slots or frees_slots
            # The write may have committed all the same: the next one checks.
            self._in_doubt.update(key_of(c) for c in batch)
            if carried is not None:
                carried.failed()
            raise
        if self._in_doubt:
            self._in_doubt.difference_update(key_of(c) for c in batch)
        # Committed: the claimed runs are ours to start, before the signals below.
        taken = None if carried is None else carried.committed()
        self._announce(batch, landed)
        return taken

    def _announce(self, batch: list[Completed], landed: dict[Key, Landed]) -> None:
        """Count what landed, say what did not, send ``task_finished`` for the rest."""
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
                    extra=run_fields(completed.run),
                )
                continue
            if written.status == RunStatus.READY:
                self.claimer.maybe_ready = True  # a retry due now (or staged later)
            elif completed.task is not None:
                send_finished(completed, written.status)
