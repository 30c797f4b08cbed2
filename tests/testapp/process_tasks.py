"""Tasks for several worker processes (tests/test_supervisor.py, bench/processes.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from taskmill.compat import task


@task
def meet(directory: str, processes: int, timeout: float = 60.0) -> int:
    """Wait until tasks in ``processes`` different processes are inside at once; return the
    pid. Proves work spread over processes without timing: one process cannot meet itself."""
    here = Path(directory)
    (here / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout
    while len(list(here.iterdir())) < processes:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(here.iterdir()))} of {processes} processes came")
        time.sleep(0.01)
    return os.getpid()


@task
def burn_cpu(milliseconds: float) -> int:
    """Pure Python work for this long of the thread's own CPU time (not wall time, which
    includes waiting for a core); returns the pid that did it."""
    end = time.thread_time() + milliseconds / 1000
    total = 0
    while time.thread_time() < end:
        for number in range(200):
            total += number * number
    return os.getpid()


@task
def sleep_ms(milliseconds: float) -> list[float]:
    """Sleep; returns [pid, thread id, start, end] (wall clock, seconds): where the time
    between tasks goes, for bench/processes.py."""
    start = time.time()
    time.sleep(milliseconds / 1000)
    return [os.getpid(), threading.get_ident(), start, time.time()]
