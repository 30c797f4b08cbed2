"""Stop signals reach the worker and the scheduler without a lock taken in the handler."""

from __future__ import annotations

import os
import signal
import threading

from taskmill.cli.signals import StopSignals


def test_a_signal_while_the_main_thread_holds_the_events_lock_does_not_deadlock():
    # Event.wait() holds its condition's lock between two checks; a handler that called
    # event.set() right there would wait for its own thread for ever (the soak's hung worker).
    event = threading.Event()
    relay = StopSignals(event.set)
    with event._cond:
        relay._handle(signal.SIGTERM, None)  # returns at once: it only writes to a pipe
    assert event.wait(10)


def test_a_real_sigterm_is_relayed_and_a_second_one_calls_on_again():
    stopped = threading.Event()
    again: list[int] = []
    relay = StopSignals(stopped.set, on_again=lambda: again.append(1))
    previous = signal.getsignal(signal.SIGTERM)
    relay.install((signal.SIGTERM,))
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopped.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        assert again == [1]  # handlers run on the main thread before kill() returns here
    finally:
        signal.signal(signal.SIGTERM, previous)
