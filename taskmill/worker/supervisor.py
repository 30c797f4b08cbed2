"""``taskmill worker --processes N``: one supervisor process, N worker processes.

Threads share one interpreter lock, so CPU-bound tasks need processes. The supervisor is a
small single-threaded loop: it starts each child as a fresh interpreter (``python -m django
taskmill worker ...`` with the same options, never a fork of a process that may hold threads
or database connections), restarts a child that dies, and passes stop signals on. It holds
no database connection while it supervises: the children do all the work, and the claim
protocol keeps them apart as it keeps apart workers on different machines.

Signals between the two (see docs/worker.md#several-processes):

- the supervisor's first SIGTERM/SIGINT: SIGTERM to every child, each stops gracefully
  (stops claiming, finishes within its --shutdown-timeout, gives back the rest);
- a second one: SIGQUIT to every child, which gives back what it holds and exits at once;
- SIGHUP: every child stops gracefully and a fresh one takes its place (new code, new id).

A supervised child takes SIGTERM and SIGINT as "stop gracefully" however many arrive, so
that one stop seen twice (Ctrl-C reaches the whole foreground process group; systemd's
default KillMode signals every process of the unit) does not turn into an emergency exit.
Only SIGQUIT means "now". If the supervisor dies without passing anything on (SIGKILL, the
OOM killer), the kernel sends each child SIGTERM (``PR_SET_PDEATHSIG``, Linux): the children
stop gracefully rather than run on unsupervised.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger("taskmill.supervisor")

# A child that dies is started again after a back-off that doubles while it keeps dying
# soon after its start (a broken deployment must not spin), from BACKOFF_FIRST to BACKOFF_MAX;
# a child that ran STABLE_AFTER seconds before it died starts the count afresh.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
# On stop, children get their --shutdown-timeout plus this to give runs back and exit...
STOP_MARGIN = 15.0
# ...and after a second signal (SIGQUIT to each), this long before SIGKILL.
ESCALATED_WAIT = 10.0

PR_SET_PDEATHSIG = 1
# Where prctl is missing (not Linux), a child looks at its parent this often instead.
PARENT_POLL = 1.0


@dataclass
class Slot:
    """One of the N places a child runs in: its number names the child (``label#number``)."""

    number: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0  # deaths in a row, each soon after its start: the back-off's count
    start_at: float | None = None  # when to start the next child, if none runs
    restarting: bool = False  # asked to stop by SIGHUP: start a new one at once
    done: bool = False  # exited on purpose (burst done, --max-tasks, shut down): not restarted


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    def __init__(
        self,
        child_command: Callable[[str], Sequence[str]],
        processes: int,
        *,
        label: str,
        burst: bool,
        shutdown_timeout: float,
        env: dict[str, str] | None = None,
    ) -> None:
        """``child_command(label)`` is the argv of a child whose worker label is ``label``:
        the supervisor's label and the slot's number, ``mail#1``, ``mail#2`` (``#1``...)."""
        self._child_command = child_command
        self._label = label
        self._slots = [Slot(number) for number in range(1, processes + 1)]
        self._burst = burst
        self._shutdown_timeout = shutdown_timeout
        self._env = env
        self._stopping = False
        self._escalated = False
        self._stop_started = 0.0
        self._stop_deadline = 0.0
        self._failed = False  # exit status 1: a burst child failed, or a stop needed SIGKILL

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until every child is done or stopped; the exit status."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        # Signals only write their number to the pipe (the C-level handler does, no Python
        # code runs in between): the loop below handles them, and SIGCHLD wakes it at once.
        previous_fd = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signums = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {signum: signal.signal(signum, _ignore) for signum in signums}
        try:
            for slot in self._slots:
                self._start(slot)
            while not self._finished():
                self._wait(wake_read)
                self._reap()
                self._tend()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_read)
            os.close(wake_write)
        logger.info("All %d worker processes stopped", len(self._slots))
        return 1 if self._failed else 0

    def _finished(self) -> bool:
        if self._stopping:
            return all(slot.process is None for slot in self._slots)
        return all(slot.done for slot in self._slots)

    def _wait(self, wake_read: int) -> None:
        """Sleep until a signal comes (a child's exit included) or the next deadline."""
        now = time.monotonic()
        deadlines = [slot.start_at for slot in self._slots if slot.start_at is not None]
        if self._stopping:
            deadlines.append(self._stop_deadline)
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        with contextlib.suppress(InterruptedError):
            select.select([wake_read], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            for signum in os.read(wake_read, 256):
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._on_stop_signal(signal.Signals(signum))
                elif signum == signal.SIGHUP:
                    self._restart_all()

    def _reap(self) -> None:
        for slot in self._slots:
            if slot.process is not None and (code := slot.process.poll()) is not None:
                self._exited(slot, code)

    def _tend(self) -> None:
        """Start the children whose back-off is over; kill those that outstay a stop."""
        now = time.monotonic()
        if not self._stopping:
            for slot in self._slots:
                if slot.start_at is not None and slot.start_at <= now:
                    self._start(slot)
        elif now >= self._stop_deadline:
            alive = [slot for slot in self._slots if slot.process is not None]
            if alive:
                logger.error(
                    "Worker process(es) %s still running %.0fs after the stop: killing them "
                    "(their runs come back when their leases expire)",
                    ", ".join(str(slot.process.pid) for slot in alive if slot.process),
                    self._stop_deadline - self._stop_started,
                )
                self._failed = True
                for slot in alive:
                    self._send(slot, signal.SIGKILL)
                    assert slot.process is not None
                    slot.process.wait()
                    slot.process = None

    # -- children -------------------------------------------------------------------------

    def _start(self, slot: Slot) -> None:
        slot.start_at = None
        label = f"{self._label}#{slot.number}"
        slot.started_at = time.monotonic()
        try:
            slot.process = subprocess.Popen(
                list(self._child_command(label)), env=self._env, stdin=subprocess.DEVNULL
            )
        except OSError as exc:  # out of processes or memory: as if it died at once
            self._back_off(slot, f"Could not start worker process #{slot.number} ({exc})")
            return
        pid = slot.process.pid
        # The worker id the child will take (its random part is the child's own).
        worker_id = f"{label}@{socket.gethostname()}:{pid}:..."
        logger.info("Started worker process %d (#%d, worker %s)", pid, slot.number, worker_id)

    def _exited(self, slot: Slot, code: int) -> None:
        assert slot.process is not None
        pid, slot.process = slot.process.pid, None
        ran = time.monotonic() - slot.started_at
        if self._stopping:
            logger.info(
                "Worker process %d (#%d) stopped: it %s", pid, slot.number, describe_exit(code)
            )
            return
        if slot.restarting:
            slot.restarting = False
            logger.info("Worker process %d (#%d) stopped for a restart", pid, slot.number)
            self._start(slot)
            return
        if code == 0:
            # It ended on purpose: the queue is empty (--burst), --max-tasks reached, or it
            # was shut down (the admin's "shut down", a SIGTERM sent to it alone).
            logger.info("Worker process %d (#%d) finished (exit code 0)", pid, slot.number)
            slot.done = True
            return
        if self._burst:
            self._failed = True
            if code > 0:
                # A one-off drain ends; a worker's own failure (an import error, a crash)
                # would most likely happen again.
                logger.error(
                    "Worker process %d (#%d) %s after %.1fs; not restarted (--burst)",
                    pid,
                    slot.number,
                    describe_exit(code),
                    ran,
                )
                slot.done = True
                return
        self._back_off(
            slot, f"Worker process {pid} (#{slot.number}) {describe_exit(code)} after {ran:.1f}s"
        )

    def _back_off(self, slot: Slot, why: str) -> None:
        """Start the slot's next child after a delay that grows while its children die
        young: a deployment whose workers cannot start must not spin."""
        ran = time.monotonic() - slot.started_at
        slot.quick_deaths = 1 if ran >= STABLE_AFTER else slot.quick_deaths + 1
        delay = min(BACKOFF_FIRST * 2 ** (slot.quick_deaths - 1), BACKOFF_MAX)
        logger.warning("%s; starting another in %.1fs", why, delay)
        slot.start_at = time.monotonic() + delay

    def _send(self, slot: Slot, signum: int) -> None:
        if slot.process is not None:
            with contextlib.suppress(ProcessLookupError):  # exited, not reaped yet
                slot.process.send_signal(signum)

    # -- signals --------------------------------------------------------------------------

    def _on_stop_signal(self, signum: signal.Signals) -> None:
        now = time.monotonic()
        if not self._stopping:
            self._stopping = True
            self._stop_started = now
            self._stop_deadline = now + self._shutdown_timeout + STOP_MARGIN
            running = [slot for slot in self._slots if slot.process is not None]
            logger.info("%s: stopping %d worker process(es) gracefully", signum.name, len(running))
            for slot in self._slots:
                slot.start_at = None  # a child waiting out its back-off is not started
                self._send(slot, signal.SIGTERM)
        elif not self._escalated:
            self._escalated = True
            self._failed = True
            self._stop_started = now
            self._stop_deadline = min(self._stop_deadline, now + ESCALATED_WAIT)
            logger.warning(
                "%s again: worker processes give back their runs and exit now", signum.name
            )
            for slot in self._slots:
                self._send(slot, signal.SIGQUIT)
        else:
            self._stop_deadline = now  # a third: SIGKILL at once

    def _restart_all(self) -> None:
        if self._stopping:
            return
        logger.info("SIGHUP: restarting the worker processes gracefully")
        for slot in self._slots:
            if slot.process is not None:
                slot.restarting = True
                self._send(slot, signal.SIGTERM)
            elif not slot.done:
                slot.quick_deaths = 0
                slot.start_at = time.monotonic()


def _ignore(signum: int, frame: object) -> None:
    """A Python-level handler, so that the signal reaches the wake-up pipe and nothing else."""


# -- in the child ---------------------------------------------------------------------------


def stop_with_supervisor(supervisor_pid: int) -> None:
    """In a supervised child: be sent SIGTERM (a graceful stop) when the supervisor dies.

    PR_SET_PDEATHSIG rather than a thread that polls ``os.getppid()``: the kernel delivers
    it at once and it takes the same path as any SIGTERM, with nothing to run meanwhile.
    The supervisor starts children from its only thread, so "the thread that started us
    died" (what the kernel watches) means the supervisor died. Elsewhere, a thread polls.
    """
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            # CDLL(None): the symbols already loaded, libc's among them.
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    if not armed:
        threading.Thread(
            target=_poll_parent, args=(supervisor_pid,), name="taskmill-parent", daemon=True
        ).start()
    # It may have died before prctl took effect: then nobody would signal us.
    if os.getppid() != supervisor_pid:
        logger.warning("The supervisor (pid %d) is gone: not starting", supervisor_pid)
        raise SystemExit(0)


def _poll_parent(supervisor_pid: int) -> None:
    while os.getppid() == supervisor_pid:
        time.sleep(PARENT_POLL)
    logger.warning("The supervisor (pid %d) is gone: stopping", supervisor_pid)
    os.kill(os.getpid(), signal.SIGTERM)
