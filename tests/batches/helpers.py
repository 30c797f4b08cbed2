"""What the batch tests read back: the records the callbacks wrote when they ran (what the
batch said then), and the callback runs the database holds."""

from __future__ import annotations

from pathlib import Path

from taskmill.models import ACTIVE_STATUSES, Run
from tests.conftest import read_records
from tests.testapp import batch_tasks

CALLBACKS = {
    "finish": batch_tasks.on_finish,
    "success": batch_tasks.on_success,
    "failure": batch_tasks.on_failure,
}


def callback_records(record_dir: Path, batch_id: int) -> dict[str, list[str]]:
    """kind -> the lines its callback runs recorded for this batch (one per run of it)."""
    found: dict[str, list[str]] = {kind: [] for kind in CALLBACKS}
    for line in read_records(record_dir):
        kind, _, rest = line.partition(" ")
        if kind in found and rest.split(" ", 1)[0] == str(batch_id):
            found[kind].append(rest.split(" ", 1)[1])
    return found


def callback_runs(batch_id: int) -> dict[str, list[Run]]:
    """kind -> the runs of its callback task enqueued with this batch's id."""
    return {
        kind: [
            run
            for run in Run.objects.filter(task_path=task.module_path).order_by("id")
            if run.args == [str(batch_id)]
        ]
        for kind, task in CALLBACKS.items()
    }


def nothing_active() -> bool:
    return not Run.objects.filter(status__in=ACTIVE_STATUSES).exists()
