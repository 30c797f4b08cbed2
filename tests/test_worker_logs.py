"""What a real worker process says about each ended attempt, at each verbosity (as text; JSON
lines: test_worker_json_logs.py)."""

from __future__ import annotations

import re

import pytest

from taskmill.models import Run
from tests.conftest import only_on
from tests.testapp import snooze_tasks, tasks

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    only_on("sqlite", "what a worker logs does not depend on the database"),
]


def lines_with(worker, text: str) -> list[str]:
    return [line for line in worker.lines if text in line]


def test_each_failed_attempt_is_logged_with_its_exception(run_worker):
    result = tasks.flaky.enqueue(3)  # fails all three of its attempts
    worker = run_worker("--burst")
    run = Run.objects.get(pk=int(result.id))
    assert run.status == "FAILED" and run.attempt == 3
    prefix = f"Run {run.pk} (tests.testapp.tasks.flaky) attempt"
    retried = lines_with(worker, "failed, retrying in")
    assert [line.split(" WARNING ")[1] for line in retried] == [
        f"taskmill.worker: {prefix} 1 failed, retrying in 0.0s: ConnectionError: attempt 1 failed",
        f"taskmill.worker: {prefix} 2 failed, retrying in 0.0s: ConnectionError: attempt 2 failed",
    ], worker.output
    final = lines_with(worker, "failed for good")
    assert [line.split(" ERROR ")[1] for line in final] == [
        f"taskmill.worker: {prefix} 3 failed for good (no retry): ConnectionError: attempt 3 failed"
    ], worker.output
    # At the default verbosity, no traceback: one line per attempt.
    assert "Traceback (most recent call last)" not in worker.output


def test_verbosity_2_adds_the_traceback(run_worker):
    result = tasks.fail.enqueue("kaboom")
    worker = run_worker("--burst", "-v", "2")
    line = f"Run {result.id} (tests.testapp.tasks.fail) attempt 1 failed for good (no retry)"
    at = next(i for i, text in enumerate(worker.lines) if line in text)
    assert worker.lines[at].endswith("ValueError: kaboom"), worker.output
    assert worker.lines[at + 1] == "Traceback (most recent call last):", worker.output
    following = worker.lines[at + 1 : at + 20]
    assert any("raise ValueError(message)" in text for text in following), worker.output


def test_a_failure_in_a_child_process_is_logged_by_the_worker(run_worker):
    # A timeout puts the attempt in a child process, whose own log goes nowhere useful.
    result = tasks.fail.using(timeout=60).enqueue("kaboom in a child")
    worker = run_worker("--burst")
    assert Run.objects.get(pk=int(result.id)).status == "FAILED"
    assert lines_with(
        worker,
        f"Run {result.id} (tests.testapp.tasks.fail) attempt 1 failed for good (no retry): "
        "ValueError: kaboom in a child",
    ), worker.output


def test_a_success_logs_no_failure(run_worker):
    tasks.add.enqueue(1, 2)
    worker = run_worker("--burst")
    assert not lines_with(worker, "failed"), worker.output


def test_a_success_and_a_snooze_are_one_info_line_each(run_worker):
    done = tasks.add.enqueue(1, 2)
    snoozed = snooze_tasks.planned.enqueue("SO")  # snoozes (due at once), then returns
    worker = run_worker("--burst")
    said = [line.split(" INFO ", 1)[1] for line in lines_with(worker, " INFO taskmill.worker: Run")]
    add, planned = r"\(tests\.testapp\.tasks\.add\)", r"\(tests\.testapp\.snooze_tasks\.planned\)"
    took = r"\d+\.\d{3}s"
    expected = [
        rf"Run {done.id} {add} attempt 1 succeeded in {took}",
        rf"Run {snoozed.id} {planned} attempt 1 snoozed for 0s after {took}",
        rf"Run {snoozed.id} {planned} attempt 2 succeeded in {took}",
    ]
    assert len(said) == len(expected), worker.output
    for pattern in expected:
        matching = [line for line in said if re.fullmatch(f"taskmill.worker: {pattern}", line)]
        assert len(matching) == 1, (pattern, worker.output)


def test_at_verbosity_0_a_success_says_nothing(run_worker):
    tasks.add.enqueue(1, 2)
    worker = run_worker("--burst", "-v", "0")
    assert not lines_with(worker, "succeeded"), worker.output
