"""The soak's workers and the chaos loop that breaks them, chosen by a seeded random."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from django.db import DatabaseError, connection

from tests.conftest import WorkerProcess

from .producer import PAUSABLE_QUEUE, Producer, with_database_retries
from .profiles import LEASE_SECONDS
from .servers import NoServer

# action -> weight. Database actions only where there is a server.
ACTIONS = {
    "kill": 3.0,  # SIGKILL a worker (its children die by the parent-death signal)
    "term": 1.5,  # SIGTERM: a graceful stop
    "freeze": 1.5,  # SIGSTOP past its lease, SIGCONT later: fencing
    "restart": 0.6,  # restart the database server (half of them crash-like)
    "cut": 0.8,  # terminate every worker's database session
    "cancel": 1.5,  # cancel a recent run
    "stop": 1.5,  # stop a running run
    "pause": 0.5,  # pause a queue, resume it a few seconds later
}


class Fleet:
    """The worker processes: always ``size`` of them not on their way out."""

    def __init__(self, size: int, env: dict[str, str], log: Path) -> None:
        self.size = size
        self.env = env
        self.log = log
        self.live: list[WorkerProcess] = []
        self.retired: list[WorkerProcess] = []  # SIGTERMed or killed
        self.frozen: set[int] = set()
        self.lock = threading.Lock()

    def start_one(self) -> WorkerProcess:
        worker = WorkerProcess(["--no-reload", "--concurrency", "4"], self.env)
        with self.lock:
            self.live.append(worker)
        return worker

    def fill(self) -> None:
        while len(self.live) < self.size:
            self.start_one()

    def pick(self, rng: random.Random, *, thawed: bool = False) -> WorkerProcess | None:
        with self.lock:
            choices = [w for w in self.live if not (thawed and w.process.pid in self.frozen)]
        return rng.choice(choices) if choices else None

    def retire(self, worker: WorkerProcess) -> None:
        with self.lock:
            if worker in self.live:
                self.live.remove(worker)
                self.retired.append(worker)

    def thaw_all(self) -> None:
        for pid in list(self.frozen):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            self.frozen.discard(pid)

    def kill_all(self) -> None:
        """An interrupted soak: leave no worker behind."""
        for worker in self.live + self.retired:
            worker.kill()

    def stop_all(self, timeout: float = 60.0) -> list[str]:
        """SIGTERM every worker and wait; returns what went wrong (exit codes, leftovers)."""
        self.thaw_all()
        problems = []
        everyone = self.live + self.retired
        for worker in self.live:
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in everyone:
            try:
                code = worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                where = "\n      ".join(stacks(worker.process.pid))
                problems.append(
                    f"worker {worker.process.pid} ignored SIGTERM for {timeout}s; its threads:"
                    f"\n      {where}"
                )
                worker.kill()
                continue
            if worker in self.live and code != 0:
                problems.append(f"worker {worker.process.pid} exited {code} on SIGTERM")
        return problems


def stacks(pid: int) -> list[str]:
    """The Python stacks of a hung worker, if py-spy is at hand (a diagnosis, not a need)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return ["(install py-spy to see where it hangs)"]
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True)
    return (dump.stdout + dump.stderr).splitlines()


class Chaos:
    def __init__(
        self,
        rng: random.Random,
        fleet: Fleet,
        server,
        producer: Producer,
        every: tuple[float, float],
        events: Path,
    ) -> None:
        self.rng = rng
        self.fleet = fleet
        self.server = server
        self.producer = producer
        self.every = every
        self.events = events
        self.counts: Counter = Counter()
        self.targeted: set[int] = set()  # runs cancelled or stopped on purpose
        # (from, to, worker pid or None for all) on the wall clock: a worker frozen, the
        # database restarting. A frozen worker may hold locks (on SQLite, the one write lock)
        # that keep the others from freeing what it holds, and its claimed runs wait: the
        # checker does not count what these times delayed (flow.py).
        self.disrupted: list[tuple[float, float, int | None]] = []
        self._frozen_at: dict[int, float] = {}
        self._timers: list[threading.Timer] = []
        self._last_restart = 0.0

    def _later(self, seconds: float, action) -> None:
        """Undo a fault after ``seconds`` (a thaw, a resume); finish() cancels what is left."""
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def note(self, text: str) -> None:
        with open(self.events, "a") as log:
            log.write(f"{time.time():.3f} {text}\n")

    def run(self, until: float, stop: threading.Event) -> None:
        actions = dict(ACTIONS)
        if isinstance(self.server, NoServer):
            actions.pop("restart")
            actions.pop("cut")
        names, weights = zip(*actions.items(), strict=True)
        try:
            while not stop.wait(self.rng.uniform(*self.every)) and time.monotonic() < until:
                action = self.rng.choices(names, weights)[0]
                try:
                    getattr(self, f"_{action}")()
                except DatabaseError as exc:  # the soak's own connection, mid-restart
                    self.note(f"{action} skipped: {exc}")
                    connection.close()
        finally:
            # Undo what is pending now, not after the producer ends: a worker frozen in the
            # last seconds would otherwise stay stopped with its thaw cancelled, and on SQLite
            # it may hold the one write lock, so the producer waits on it until it gives up
            # (CI, seed 613301510: the producer and a replacement worker timed out after 60 s).
            self.finish()
            connection.close()

    # -- processes -----------------------------------------------------------------------

    def _kill(self) -> None:
        worker = self.fleet.pick(self.rng)
        if worker is None:
            return
        os.kill(worker.process.pid, signal.SIGKILL)  # the worker only, not its group
        self.fleet.frozen.discard(worker.process.pid)
        self._thawed(worker.process.pid)
        self.fleet.retire(worker)
        self.fleet.start_one()
        self.counts["kills"] += 1
        self.note(f"SIGKILL {worker.process.pid}")

    def _term(self) -> None:
        worker = self.fleet.pick(self.rng, thawed=True)
        if worker is None:
            return
        worker.signal(signal.SIGTERM)
        self.fleet.retire(worker)
        self.fleet.start_one()
        self.counts["terms"] += 1
        self.note(f"SIGTERM {worker.process.pid}")

    def _freeze(self) -> None:
        worker = self.fleet.pick(self.rng, thawed=True)
        if worker is None:
            return
        pid = worker.process.pid
        os.kill(pid, signal.SIGSTOP)
        self.fleet.frozen.add(pid)
        self._frozen_at[pid] = time.time()
        seconds = LEASE_SECONDS + self.rng.uniform(1.0, 3.0)

        def thaw() -> None:
            if pid in self.fleet.frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                self.fleet.frozen.discard(pid)
                self._thawed(pid)
                self.note(f"SIGCONT {pid}")

        self._later(seconds, thaw)
        self.counts["freezes"] += 1
        self.note(f"SIGSTOP {pid} for {seconds:.1f}s")

    def _thawed(self, pid: int) -> None:
        since = self._frozen_at.pop(pid, None)
        if since is not None:
            self.disrupted.append((since, time.time(), pid))

    # -- the database ----------------------------------------------------------------------

    def _restart(self) -> None:
        if time.monotonic() - self._last_restart < 8:
            return  # let the fleet recover between two restarts
        crash = self.rng.random() < 0.5
        connection.close()
        began = time.time()
        down = self.server.restart(crash)
        self.disrupted.append((began, time.time(), None))
        self._last_restart = time.monotonic()
        self.counts["restarts"] += 1
        self.note(f"restart ({'crash' if crash else 'fast'}) down {down:.2f}s")

    def _cut(self) -> None:
        from tests.conftest import kill_other_connections

        cut = kill_other_connections()
        self.counts["cuts"] += 1
        self.note(f"cut {cut} sessions")

    # -- the control API -------------------------------------------------------------------

    def _cancel(self) -> None:
        import taskmill
        from taskmill.models import Run

        # Runs not started yet (waiting on a dependency, deferred, queued behind others).
        waiting = list(
            Run.objects.filter(status__in=["READY", "WAITING"]).values_list("id", flat=True)[:50]
        )
        if not waiting:
            return
        run_id = self.rng.choice(waiting)
        if taskmill.cancel(run_id):
            self.targeted.add(run_id)
            self.counts["cancels"] += 1
            self.note(f"cancel {run_id}")

    def _stop(self) -> None:
        import taskmill
        from taskmill.models import Run

        running = list(Run.objects.filter(status="RUNNING").values_list("id", flat=True)[:50])
        if not running:
            return
        run_id = self.rng.choice(running)
        if taskmill.stop(run_id):
            self.targeted.add(run_id)
            self.counts["stops"] += 1
            self.note(f"stop {run_id}")

    def _pause(self) -> None:
        import taskmill

        if not taskmill.pause_queue(PAUSABLE_QUEUE):
            return
        seconds = self.rng.uniform(1.0, 4.0)

        def resume() -> None:
            with_database_retries(lambda: taskmill.resume_queue(PAUSABLE_QUEUE))
            connection.close()
            self.note(f"resume {PAUSABLE_QUEUE}")

        self._later(seconds, resume)
        self.counts["pauses"] += 1
        self.note(f"pause {PAUSABLE_QUEUE} for {seconds:.1f}s")

    def finish(self) -> None:
        """Undo what is pending: thaw frozen workers, resume the queue."""
        import taskmill

        for timer in self._timers:
            timer.cancel()
        self.fleet.thaw_all()
        for pid in list(self._frozen_at):
            self._thawed(pid)
        with_database_retries(lambda: taskmill.resume_queue(PAUSABLE_QUEUE))
