"""Handlers that ``tests/test_processes.py`` runs in ``ProcessPool`` children.

One handler, ``dispatch``, picks the behaviour named in the payload, so a test can do several
things with one pool (and one child) in turn.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _touch(path: str, text: str = "") -> None:
    # Write then rename: a test polling for the file never reads it half-written.
    partial = Path(path + ".partial")
    partial.write_text(text)
    partial.rename(path)


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def dispatch(payload: dict[str, Any]) -> Any:
    action = payload["action"]
    if action == "echo":
        return {"echo": payload.get("value"), "pid": os.getpid()}
    if action == "env":
        return {
            "value": os.environ.get(payload["name"]),
            "settings": os.environ.get("DJANGO_SETTINGS_MODULE"),
            "testapp_tasks_imported": "tests.testapp.tasks" in sys.modules,
        }
    if action == "sleep":
        # Reports its pid first, so a test can tell the child's death from a slow start.
        _touch(payload["pid_file"], str(os.getpid()))
        try:
            time.sleep(payload.get("seconds", 60))
        finally:
            if payload.get("marker"):
                _touch(payload["marker"], "finally ran")
        return {"slept": True}
    if action == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _touch(payload["pid_file"], str(os.getpid()))
        time.sleep(60)
        return {"slept": True}
    if action == "grandchild":
        sleeper = subprocess.Popen(["sleep", "300"])
        _touch(payload["pid_file"], f"{os.getpid()} {sleeper.pid}")
        sleeper.wait()
        return {"slept": True}
    if action == "rendezvous":
        directory = Path(payload["directory"])
        _touch(str(directory / f"arrived-{os.getpid()}"))
        both = _wait_for(lambda: len(list(directory.glob("arrived-*"))) >= 2, timeout=15)
        return {"pid": os.getpid(), "saw_both": both}
    if action == "atexit":
        # Runs only if the child's interpreter ends normally, not if it is killed.
        atexit.register(_touch, payload["marker"], "clean exit")
        return {"pid": os.getpid()}
    if action == "raise":
        raise ValueError("handler failed on purpose")
    if action == "not_a_dict":
        return ["a", "list"]
    if action == "exit":
        os._exit(payload["code"])
    raise AssertionError(f"unknown action {action!r}")
