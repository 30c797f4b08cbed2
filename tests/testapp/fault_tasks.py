"""Tasks of the fault suite's database-trouble tests (tests/faults/test_database_trouble.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import taskmill
from taskmill.compat import task

from .tasks import _record


def _wait_for_both(barrier: Path, timeout: float = 20.0) -> None:
    """Until both runs have taken their first lock (each leaves a file ``<barrier>-<label>``)."""
    deadline = time.monotonic() + timeout
    while len(list(barrier.parent.glob(f"{barrier.name}-*"))) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other run never took its first lock ({barrier})")
        time.sleep(0.01)


@taskmill.task(atomic=True)
def cross_lock(label: str, first: int, second: int, barrier: str) -> str:
    """Lock Effect row ``first``, wait for the other run to hold its first, lock ``second``.

    Two of these with crossed rows deadlock for certain: each holds the row the other
    wants next. The barrier files make the crossing certain, not a matter of timing. A try
    after the first (the deadlock's victim, rolled back) does not wait: the other run may
    be done by then. Each try logs ``try <label>``; the body's row exists once if it works.
    """
    from .models import Effect

    _record(f"try {label}")
    Effect.objects.select_for_update().get(pk=first)
    mine = Path(f"{barrier}-{label}")
    if not mine.exists():  # the first try
        mine.touch()
        _wait_for_both(Path(barrier))
    Effect.objects.select_for_update().get(pk=second)
    Effect.objects.create(name=f"done-{label}")
    _record(f"done {label} {os.getpid()}")
    return label


@taskmill.task(takes_context=True, on_success="tests.testapp.tasks.note_success")
def record_with_callback(context, value: str) -> str:
    """``record`` with a callback: its finish is written in one transaction with the
    callback's run (the path where a deadlock can roll back more than the outcome)."""
    _record(f"{context.task_result.id} {context.attempt} {value}")
    return context.task_result.id


@task
def write_row(name: str) -> str:
    """A plain Django ``@task`` that writes one row (tests/faults/test_database_restart.py)."""
    from .models import Effect

    Effect.objects.create(name=name)
    return name
