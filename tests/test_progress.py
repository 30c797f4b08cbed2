"""The long commands show a progress line on a real terminal and stay quiet in a pipe."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from taskmill.models import Run, Schedule
from tests.conftest import ROOT, only_on
from tests.scheduler.conftest import TASK
from tests.test_overview import make_run
from tests.test_status_health import taskmill

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    only_on(
        "sqlite",
        "a progress line on a terminal does not depend on the database "
        "(pruning itself is tested on every database)",
    ),
]


def on_terminal(env: dict[str, str], *args: str, timeout: float = 300.0) -> tuple[int, str]:
    """Run ``manage.py taskmill ARGS`` with a pseudo-terminal as its standard output."""
    main, child = os.openpty()
    # No output processing: the child's "\n" arrives as written, not as "\r\n".
    attributes = termios.tcgetattr(child)
    attributes[1] &= ~termios.OPOST
    termios.tcsetattr(child, termios.TCSANOW, attributes)
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "taskmill", *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.DEVNULL,
    )
    os.close(child)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([main], [], [], 1.0)
            if not readable:
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: every holder of the terminal closed it
                break
            if not data:
                break
            shown += data
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
    return code, shown.decode()


# A command whose output goes to pipes, as in a script: the same helper as the status tests'.
in_pipe = taskmill


def expired_runs(count: int) -> None:
    for _ in range(count):
        make_run("default", "SUCCESSFUL", expires_at=timezone.now() - timedelta(minutes=5))


def test_prune_shows_progress_on_a_terminal_and_only_its_summary_in_a_pipe(subprocess_env):
    expired_runs(5)
    code, shown = on_terminal(subprocess_env, "prune", "--batch-size", "2")
    assert code == 0, shown
    assert "\rDeleting finished runs: 2 of about 5..." in shown
    assert "\rDeleting finished runs: 4 of about 5..." in shown
    # The summary is written over the progress line, and the line ends.
    assert shown.endswith("\n") and shown.rsplit("\r", 1)[1].rstrip() == "Deleted 5 finished runs."
    assert not Run.objects.exists()

    expired_runs(3)
    piped = in_pipe(subprocess_env, "prune", "--batch-size", "2")
    assert (piped.returncode, piped.stdout) == (0, "Deleted 3 finished runs.\n")


def _document(*names: str) -> str:
    entries = [
        {"name": name, "task_path": TASK, "kind": "cron", "cron": "0 8 * * *"} for name in names
    ]
    return json.dumps({"format": "taskmill-schedules", "version": 1, "schedules": entries})


def test_import_shows_progress_on_a_terminal_then_its_usual_output(subprocess_env, tmp_path):
    path = tmp_path / "schedules.json"
    path.write_text(_document("a", "b", "c"))
    code, shown = on_terminal(subprocess_env, "import-schedules", str(path))
    assert code == 0, shown
    assert "\rImporting schedules: 3 of 3 checked..." in shown
    assert "\rImporting schedules: 3 of 3 written..." in shown
    progress, usual = shown.rsplit("\r", 1)
    # The line is blanked before the usual report, which starts on a clean line.
    assert progress.endswith("\r" + " " * len("Importing schedules: 3 of 3 written..."))
    assert usual == (
        "created: a\ncreated: b\ncreated: c\n"
        "Schedules imported: 3 created, 0 updated, 0 unchanged, 0 skipped (declared in code)\n"
    )
    assert sorted(Schedule.objects.values_list("name", flat=True)) == ["a", "b", "c"]

    path.write_text(_document("a", "d"))
    piped = in_pipe(subprocess_env, "import-schedules", str(path))
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stdout
    assert piped.stdout == (
        "created: d\n"
        "Schedules imported: 1 created, 0 updated, 1 unchanged, 0 skipped (declared in code)\n"
    )
