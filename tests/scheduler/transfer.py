"""Helpers shared by the export/import tests: run the commands, build documents, snapshot
what an import could write."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.core.management import call_command

from taskmill.models import Schedule
from tests.conftest import ROOT

from .conftest import TASK

OTHER_TASK = "tests.testapp.scheduled_tasks.record_fire"
Edge = Schedule.depends_on.through


def export(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("taskmill", "export-schedules", *args, stdout=out)
    return json.loads(out.getvalue())


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "schedules.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def import_document(tmp_path: Path, document: Any, *args: str) -> str:
    out = io.StringIO()
    call_command("taskmill", "import-schedules", str(write(tmp_path, document)), *args, stdout=out)
    return out.getvalue()


def snapshot() -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """Everything an import could write: every column of every schedule, and the edges."""
    names = [field.attname for field in Schedule._meta.concrete_fields]
    rows = list(Schedule.objects.order_by("name").values_list(*names))
    edges = sorted(Edge.objects.values_list("from_schedule__name", "to_schedule__name"))
    return rows, edges


def entry(name: str, **values: Any) -> dict[str, Any]:
    return {"name": name, "task_path": TASK, "kind": "cron", "cron": "0 8 * * *", **values}


def document(*schedules: dict[str, Any]) -> dict[str, Any]:
    return {"format": "taskmill-schedules", "version": 1, "schedules": list(schedules)}


def import_in_a_process(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``manage.py taskmill import-schedules PATH`` as a real command, with its output."""
    return subprocess.run(
        [sys.executable, "-m", "django", "taskmill", "import-schedules", str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
