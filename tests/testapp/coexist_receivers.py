"""Receivers of both packages' task signals, Django's and the django-tasks backport's, that
write one line per call: which package's signal, which signal, the run, its status, the
sender and the exception being handled (tests/test_backport_coexistence.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django.tasks.signals
import django_tasks.signals

SIGNALS = ("task_enqueued", "task_started", "task_finished")
PACKAGES = {"django.tasks": django.tasks.signals, "django_tasks": django_tasks.signals}


def listen(write: Callable[[str], None]) -> Callable[[], None]:
    """Connect a receiver to each of the six signals; return what disconnects them."""
    connected = []
    for package, module in PACKAGES.items():
        for name in SIGNALS:

            def receiver(
                sender: type,
                task_result: Any,
                *,
                _package: str = package,
                _name: str = name,
                **kwargs: Any,
            ) -> None:
                handled = sys.exc_info()[1]
                write(
                    f"{_package} {_name} {task_result.id} {task_result.status} "
                    f"{sender.__name__} {type(handled).__name__ if handled else '-'}"
                )

            signal = getattr(module, name)
            signal.connect(receiver, weak=False)
            connected.append((signal, receiver))

    def disconnect() -> None:
        for signal, receiver in connected:
            signal.disconnect(receiver)

    return disconnect


def listen_in_this_process() -> None:
    """In a worker process: one file per process in the test's record dir."""
    path = Path(os.environ["TASKMILL_TEST_RECORD_DIR"]) / f"signals-{os.getpid()}.log"

    def write(line: str) -> None:
        with open(path, "a") as file:
            file.write(line + "\n")

    listen(write)
