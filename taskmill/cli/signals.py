"""SIGTERM and SIGINT for the long-running commands, without deadlocking them.

Python runs a signal handler on the main thread between two bytecodes, possibly while that
thread holds the lock inside a ``threading.Event`` it is waiting on. A handler that sets such
an Event (a stop request wakes the worker's loop that way) then waits for a lock its own
thread holds: the process hangs for ever, ignoring every further SIGTERM. The chaos soak
caught a worker doing exactly that. So the handler only writes a byte to a pipe, which takes
no lock, and a thread reading the pipe makes the stop request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import Any


class StopSignals:
    """Relay SIGTERM/SIGINT to ``on_stop`` (called on a thread of its own).

    ``on_again``, if given, is called on the main thread, in the handler, for a signal that
    comes after the stop was requested: it may raise (an emergency exit), it must not block.
    """

    def __init__(
        self, on_stop: Callable[[], None], on_again: Callable[[], None] | None = None
    ) -> None:
        self._on_stop = on_stop
        self._on_again = on_again
        self._received = False  # a plain flag: read and written in the handler, no lock
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        threading.Thread(target=self._relay, name="taskmill-signals", daemon=True).start()

    def install(self, signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        for signum in signums:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._received and self._on_again is not None:
            self._on_again()
            return
        self._received = True
        # A full pipe means a stop is on its way already.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"s")

    def _relay(self) -> None:
        while os.read(self._read, 64):
            self._on_stop()
