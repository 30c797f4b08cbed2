"""Several real worker processes drain one queue: every run once, none lost."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection

from taskmill.models import Run
from tests.conftest import read_records
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 4


def test_four_workers_run_each_task_exactly_once(start_worker, record_dir):
    # The full 20,000 on the server databases; SQLite has one writer, so fewer suffice.
    total = 2_000 if connection.vendor == "sqlite" else 20_000
    results = tasks.record.enqueue_many([((i,), {}) for i in range(total)])
    expected_ids = {result.id for result in results}
    assert len(expected_ids) == total

    workers = [
        start_worker("--burst", "--concurrency", "2", "--label", f"w{i}") for i in range(WORKERS)
    ]
    for worker in workers:
        assert worker.wait(300) == 0, worker.output

    # What actually ran, from each worker process's own log: (result id, attempt, value).
    lines = read_records(record_dir)
    ran = Counter(line.split()[0] for line in lines)
    twice = {run_id: count for run_id, count in ran.items() if count > 1}
    assert twice == {}, f"{len(twice)} runs ran more than once"
    assert set(ran) == expected_ids, f"{len(expected_ids - set(ran))} runs never ran"
    assert {line.split()[1] for line in lines} == {"1"}

    # And what the database says about them.
    assert Run.objects.count() == total
    assert Run.objects.filter(status="SUCCESSFUL", attempt=1).count() == total
    labels = Counter(
        worker_ids[0].split("@")[0]
        for worker_ids in Run.objects.values_list("worker_ids", flat=True)
    )
    assert len(labels) >= 2, f"the work was not shared: {labels}"
