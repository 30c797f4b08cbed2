"""Claiming: how many runs to take (the prefetch), taking them, handing them to the executor,
and what a claim whose reply was lost may have taken all the same.

The claimer also keeps the count of runs claimed and not yet reported back by the
executor (``outstanding``): the claim limit is made of it, and only this module changes it.
Its state is the worker's thread's, except ``outstanding`` and ``low_water``, which the task
threads read to decide whether to wake that thread (a stale read only delays a wake-up).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from ..db import ClaimedRun, Engine
from ..limits import gate as limits_gate
from ..models import Run
from ..status import RunStatus

if TYPE_CHECKING:
    from .executor import Executor
    from .held import HeldRuns
    from .loop import WorkerOptions

logger = logging.getLogger("taskmill.worker")

# A worker holds no more waiting runs than it expects to start within this window, or
# within a few claims' time when claims take longer (see Prefetch).
PREFETCH_WINDOW = 0.05
CLAIMS_COVERED = 4
MAX_PREFETCH = 200


class Prefetch:
    """How many claimed-but-waiting runs to hold: enough to keep slots busy, no more.

    The window is measured in time: with 1 ms tasks a worker holds about 50 per slot, with
    1 s tasks none beyond its free slots, so slow tasks never strand quick ones.

    The window also covers a few claims: the worker claims again when half the backlog is
    left, and the slots must not run dry before that claim commits. A claim is usually a
    millisecond or two, but CPU-bound tasks make it far slower: the worker's thread gets the
    interpreter lock back after each of the claim's round trips only when the task's thread
    lets go of it (every 5 ms, Python's switch interval). Measured with 10 ms CPU-bound tasks
    (bench/processes.py), a 50 ms window left the task thread waiting for runs a third of the
    time.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.average: float | None = None  # moving average of task durations, seconds
        self.claim_time = 0.0  # moving average of a claim's wall time, its write included

    def observe(self, duration: float) -> None:
        self.average = duration if self.average is None else 0.9 * self.average + 0.1 * duration

    def observe_claim(self, seconds: float) -> None:
        self.claim_time = 0.8 * self.claim_time + 0.2 * seconds

    def backlog(self) -> int:
        if self.average is None:
            return self.concurrency
        window = max(PREFETCH_WINDOW, CLAIMS_COVERED * self.claim_time)
        per_slot = window / max(self.average, 1e-6)
        return min(int(per_slot * self.concurrency), MAX_PREFETCH)


class Claimer:
    def __init__(
        self,
        worker_id: str,
        options: WorkerOptions,
        engine: Engine,
        held: HeldRuns,
        executor: Executor,
    ) -> None:
        self.worker_id = worker_id
        self.options = options
        self.engine = engine
        self.held = held
        self.executor = executor
        self.prefetch = Prefetch(options.concurrency)
        self.outstanding = 0  # claimed and not yet reported back by the executor
        self.claimed_total = 0
        # Something may be ready: claim before sleeping. Raised by whoever learns of work (a
        # wake-up, the stager, a rescue, a retry written), lowered by a claim.
        self.maybe_ready = True
        self.low_water = 0  # wake to claim when fewer runs than this wait
        self.fenced = False  # the heartbeat lost the database: claim nothing
        self.in_doubt = False  # a claim failed: it may have claimed runs all the same
        self._ran = False  # a claim statement ran this turn: time it for the prefetch

    def limit(self) -> int:
        """How many runs to claim now (0: enough wait already, or the worker is full)."""
        options = self.options
        backlog = self.prefetch.backlog()
        self.low_water = backlog // 2
        if self.executor.waiting_count() > self.low_water:
            return 0  # enough waiting already; claim again when it runs low
        limit = options.concurrency + backlog - self.outstanding
        if options.max_tasks is not None:
            limit = min(limit, options.max_tasks - self.claimed_total)
        return max(limit, 0)

    def claim(self) -> int:
        """Claim on its own (no outcomes to carry it); return how many runs it took."""
        limit = self.limit()
        if limit <= 0 or self.fenced:
            return 0
        self._prepare()
        try:
            runs = self.run_claim(limit)
        except DatabaseError:
            self.failed()
            raise
        return self.took(runs, limit)

    def carried(self) -> CarriedClaim | None:
        """A claim to make inside the outcomes' transaction, or None if none is due.

        Prepared here, before the outcomes are taken for writing: returning the runs of a
        claim in doubt may fail, and the outcomes must still be there for the next try."""
        limit = self.limit() if not self.fenced else 0
        if limit <= 0:
            return None
        self._prepare()
        return CarriedClaim(self, limit)

    def run_claim(
        self, limit: int, *, gate: bool = True, freeing: Sequence[str] = ()
    ) -> list[ClaimedRun]:
        """The claim statement(s), in the caller's transaction if there is one; then, with
        ``gate``, the limits' gate in a transaction of its own (a run claimed and not let
        start meanwhile counts as in use: others hold back, never start one too many).
        ``freeing``: queues the caller's transaction frees slots in (Engine.claim)."""
        self._ran = True
        now = timezone.now()
        runs = self.claim_statement(limit, now, freeing)
        if gate and limits_gate.touches(runs, self.engine.alias):
            with transaction.atomic(using=self.engine.alias):
                admitted = limits_gate.settle_slots(self.engine.alias, runs)
            self.held_back(len(runs) - len(admitted))
            runs = admitted
        return runs

    def held_back(self, count: int) -> None:
        """The gate gave back ``count`` claimed runs: others may be claimable behind them."""
        if count:
            self.maybe_ready = True

    def claim_statement(
        self, limit: int, now: datetime, freeing: Sequence[str] = ()
    ) -> list[ClaimedRun]:
        return self.engine.claim(
            worker_id=self.worker_id,
            limit=limit,
            now=now,
            lease_until=now + timedelta(seconds=self.options.lease_seconds),
            freeing=freeing,
            **self._filters(),
        )

    def any_left(self) -> bool:
        """Before a burst worker exits on an empty claim: is a claimable run left all the
        same? A claim passes over locked rows (MariaDB's even lock rows of other queues
        while they scan them), so an empty claim can be another worker's lock, not an
        empty queue. If one is left, the worker claims again at its next poll: the idle
        back-off, not at once, which would spin on a lock held for long."""
        return self.engine.any_claimable(now=timezone.now(), **self._filters())

    def _filters(self) -> dict[str, Any]:
        """Which runs this worker may claim: its queues and TASKS aliases."""
        options = self.options
        return {
            "queues": options.queues,
            "exclude_queues": options.exclude_queues,
            "backends": options.backends,
        }

    def failed(self) -> None:
        # It may have committed all the same (the reply was lost): look before claiming.
        self.in_doubt = True
        self.maybe_ready = True

    def took(self, runs: list[ClaimedRun], limit: int) -> int:
        """Hold and start runs a committed claim took; return how many."""
        if len(runs) == limit:
            self.maybe_ready = True  # a full batch: there is probably more
        self.claimed_total += len(runs)
        self.outstanding += len(runs)
        self.held.hold(runs)
        self.executor.submit(runs)
        return len(runs)

    def came_back(self, count: int) -> None:
        """``count`` claimed runs are no longer out: reported done, or given back."""
        self.outstanding -= count

    def none_out(self) -> None:
        """Every run still out was given back: wait for none."""
        self.outstanding = 0

    def time_turn(self, started: float) -> None:
        """After a turn of the loop: if a claim ran in it, time it for the prefetch, from
        the turn's start (the outcomes written with it delay it too)."""
        if self._ran:
            self.prefetch.observe_claim(time.monotonic() - started)
            self._ran = False

    def settle_doubt(self) -> None:
        """After a claim that failed, give back what it may have claimed all the same."""
        if not self.in_doubt:
            return
        held = self.held.ids()
        orphans = [
            limits_gate.Given(*row)
            for row in Run.objects.using(self.engine.alias)
            .filter(worker_id=self.worker_id, status=RunStatus.RUNNING)
            .exclude(pk__in=list(held))
            .values_list("pk", "queue_name", "concurrency_key")
        ]
        returned = self.engine.release_orphans(self.worker_id, held, now=timezone.now())
        if returned:  # their limits' slots are free again
            limits_gate.free_slots(self.engine.alias, orphans)
        self.in_doubt = False
        if returned:
            logger.warning(
                "Returned %d run(s) claimed by a claim whose reply was lost to the queue",
                returned,
            )

    def _prepare(self) -> None:
        self.maybe_ready = False
        self.settle_doubt()


class CarriedClaim:
    """A claim made in the outcomes' transaction (OutcomeWriter.flush): one commit for both.

    Called by the write, inside its transaction (not at all when it had nothing to write);
    then ``committed`` or ``failed`` by the writer."""

    __slots__ = ("claimer", "limit", "runs", "taken")

    def __init__(self, claimer: Claimer, limit: int) -> None:
        self.claimer = claimer
        self.limit = limit
        self.runs: list[ClaimedRun] | None = None
        self.taken = 0

    def __call__(self, freeing: Sequence[str] = ()) -> None:
        # Gated by the outcomes' settle, with the slots they free (followups.settle), which
        # leaves in ``runs`` those that may start; ``freeing``: the outcomes' queues.
        self.runs = self.claimer.run_claim(self.limit, gate=False, freeing=freeing)
        self.taken = len(self.runs)

    def failed(self) -> None:
        self.claimer.failed()

    def committed(self) -> int | None:
        """Start what it took; None when it did not run (the worker claims on its own)."""
        if self.runs is None:
            self.claimer.maybe_ready = True
            return None
        self.claimer.held_back(self.taken - len(self.runs))
        return self.claimer.took(self.runs, self.limit)
