"""The soak's checker catches what it claims to catch: a soak that cannot fail proves nothing.

Each case builds, in the test database and a side-effect log, the trace one defect would
leave (an attempt run twice, a run gone, a run left RUNNING, an atomic row written twice, a
callback missing, a schedule that skipped a second) and asserts the checker counts it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskmill.models import Run, Schedule
from tests.faults.soak.checker import check
from tests.faults.soak.producer import Enqueued, SoakSchedule, create_schedules
from tests.testapp import soak_tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db


def finish(result, status: str = "SUCCESSFUL", attempt: int = 1, **fields) -> int:
    run_id = int(result.id)
    values = {"return_value": result.args[0]} if status == "SUCCESSFUL" else {}
    workers = [f"worker-{n}" for n in range(attempt)]
    Run.objects.filter(pk=run_id).update(
        status=status, attempt=attempt, worker_ids=workers, **{**values, **fields}
    )
    return run_id


def log(record_dir, *lines: str) -> None:
    with open(record_dir / "1.log", "a") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def test_a_clean_history_passes(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0))
    log(record_dir, f"start {run_id} 1 plain", f"end {run_id} 1")
    report = check(record_dir, [Enqueued("plain-1", "plain", run_id)], set(), [])
    assert report.ok, report.problems


def test_an_attempt_run_twice_is_doubled(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0))
    log(record_dir, *[f"start {run_id} 1 plain", f"end {run_id} 1"] * 2)
    report = check(record_dir, [Enqueued("plain-1", "plain", run_id)], set(), [])
    assert report.doubled == 2  # the same attempt twice, and more runs than errors explain
    assert not report.ok


def test_a_second_attempt_needs_an_error_that_explains_it(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0), attempt=2)
    log(record_dir, f"start {run_id} 1 plain", f"start {run_id} 2 plain", f"end {run_id} 2")
    assert check(record_dir, [], set(), []).doubled == 1
    lost = {"exception_class_path": "taskmill.exceptions.WorkerLost", "traceback": "lost\n"}
    Run.objects.filter(pk=run_id).update(errors=[lost])
    report = check(record_dir, [], set(), [])
    assert report.ok, report.problems
    assert report.crashed_runs == 1


def test_a_run_gone_is_lost_and_a_run_left_running_is_stuck(record_dir):
    gone = Enqueued("plain-9", "plain", 999_999)
    running = soak_tasks.plain.enqueue("plain-2", 0)
    Run.objects.filter(pk=running.id).update(status="RUNNING", attempt=1)
    report = check(record_dir, [gone], set(), [])
    assert (report.lost, report.stuck) == (1, 1)


def test_a_wrong_end_state_is_caught_unless_the_soak_cancelled_it(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0), status="CANCELLED")
    assert check(record_dir, [], set(), []).wrong == 1
    assert check(record_dir, [], {run_id}, []).ok


def test_atomic_rows_must_exist_exactly_once(record_dir):
    twice = finish(soak_tasks.atomic_row.enqueue("atomic-1", 0))
    never = finish(soak_tasks.atomic_row.enqueue("atomic-2", 0))
    Effect.objects.bulk_create([Effect(name=f"soak-{twice}"), Effect(name=f"soak-{twice}")])
    log(record_dir, *(f"{word} {run} 1 atomic" for run in (twice, never) for word in ("start",)))
    log(record_dir, f"end {twice} 1", f"end {never} 1")
    report = check(record_dir, [], set(), [])
    assert (report.doubled, report.lost) == (1, 1)


def test_a_finished_run_must_have_enqueued_its_callback_once(record_dir):
    run_id = finish(soak_tasks.with_callbacks.enqueue("callbacks-1", True))
    log(record_dir, f"start {run_id} 1 with_callbacks", f"end {run_id} 1")
    assert check(record_dir, [], set(), []).lost == 1
    soak_tasks.callback_ok.enqueue(str(run_id))
    soak_tasks.callback_ok.enqueue(str(run_id))
    Run.objects.filter(task_path__endswith="callback_ok").update(status="SUCCESSFUL")
    assert check(record_dir, [], set(), []).doubled == 1


def test_every_fire_time_must_be_enqueued_once(record_dir):
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=10)
    schedules = create_schedules(start, start + timedelta(seconds=3))
    cron = schedules[0]
    assert isinstance(cron, SoakSchedule) and len(cron.expected_fires()) == 4
    row = Schedule.objects.get(name=cron.name)
    for at in cron.expected_fires()[:3]:  # the last second never fired
        Run.objects.create(
            task_path=row.task_path, args=[], kwargs={}, status="SUCCESSFUL", schedule=row,
            scheduled_for=at, queue_name="default", backend="default", enqueued_at=at,
            available_at=at,
        )  # fmt: skip
    report = check(record_dir, [], set(), [cron])
    assert report.missing_fires == 1 and report.double_fires == 0


def test_a_run_failed_by_a_database_error_is_lost_unless_counted_as_a_lost_attempt(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0), status="FAILED")
    log(record_dir, f"start {run_id} 1 plain")
    outage = {
        "exception_class_path": "django.db.utils.OperationalError",
        "traceback": "django.db.utils.OperationalError: server closed the connection\n",
    }
    # The restart failed it for good: the database's outage, a run lost.
    Run.objects.filter(pk=run_id).update(errors=[outage])
    report = check(record_dir, [], set(), [])
    assert report.lost == 1 and not report.ok, report.problems
    assert "FAILED by a database error" in report.problems[0]
    # A failing kind's run too: its own error must be what failed it.
    fails = finish(soak_tasks.fails.enqueue("fails-1"), status="FAILED", errors=[outage])
    log(record_dir, f"start {fails} 1 fails", f"end {fails} 1")
    assert check(record_dir, [], set(), []).lost == 2
    Run.objects.filter(pk=fails).delete()
    # Counted as lost attempts, up to the limit, it gave up by design, as after lost workers.
    lost = {**outage, "counted_as": "lost"}
    Run.objects.filter(pk=run_id).update(errors=[lost] * 3, attempt=3, worker_ids=["w"] * 3)
    log(record_dir, f"start {run_id} 2 plain", f"start {run_id} 3 plain")
    report = check(record_dir, [], set(), [])
    assert report.ok, report.problems
    assert (report.gave_up, report.crashed_runs) == (1, 1)
