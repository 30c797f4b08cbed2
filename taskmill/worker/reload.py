"""Restart the worker when its code changes (development).

Django's own autoreloader runs the program in a secondary thread under a parent process
that kills it on Ctrl-C; a worker needs its signal handlers in the main thread and a
graceful stop. So this watcher only watches: on a change it asks the worker to stop the
usual way, and the command re-executes itself once the running tasks are done.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from django.utils import autoreload

logger = logging.getLogger("taskmill.worker")

CHECK_EVERY = 1.0  # seconds between two looks at the files' modification times


def _snapshot() -> dict[Path, float]:
    times: dict[Path, float] = {}
    for path in autoreload.iter_all_python_module_files():
        try:
            times[path] = path.stat().st_mtime
        except OSError:
            continue  # a module file removed since import
    return times


class CodeWatcher:
    """Calls ``on_change`` once, from a daemon thread, when an imported module file changes."""

    def __init__(self, on_change: Callable[[Path], None]) -> None:
        self._on_change = on_change
        self._stopping = threading.Event()
        self.changed: Path | None = None
        self._thread = threading.Thread(target=self._watch, name="taskmill-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _watch(self) -> None:
        before = _snapshot()
        while not self._stopping.wait(CHECK_EVERY):
            after = _snapshot()
            for path, mtime in after.items():
                if before.get(path, mtime) != mtime:
                    self.changed = path
                    logger.info("%s changed: restarting the worker", path)
                    self._on_change(path)
                    return
            before = after


def restart_process() -> None:
    """Replace this process with a fresh run of the same command."""
    sys.stdout.flush()
    sys.stderr.flush()
    arguments = autoreload.get_child_arguments()
    os.execv(arguments[0], arguments)
