"""Leases and rescue with real processes and real signals: SIGKILL, SIGSTOP/SIGCONT."""

from __future__ import annotations

from collections import Counter

import pytest

from taskmill.exceptions import WorkerLost, class_path
from taskmill.models import Run, RunStatus
from tests.conftest import FAST_LEASES, process_alive, read_records, wait_until
from tests.testapp import execution_tasks as tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LOST = class_path(WorkerLost)


def lost_errors(run: Run) -> int:
    return sum(1 for error in run.errors if error["exception_class_path"] == LOST)


def run_state(run_id: object) -> dict[str, object]:
    return Run.objects.values(
        "status", "attempt", "prefetched", "worker_id", "lease_expires_at", "errors"
    ).get(pk=run_id)


def test_sigkill_mid_task_ten_times_loses_nothing(start_worker, run_worker, record_dir):
    # A worker that only rescues (it serves a queue nobody uses) keeps watching the leases.
    rescuer = start_worker("--queue", "emails", "--no-scheduler", env=FAST_LEASES)
    ids = []
    # Ten kills in a row here; the chaos soak (tests/faults) kills hundreds of workers.
    for n in range(10):
        # Each new run outranks the rescued ones, so the victim (one claim) takes it.
        result = tasks.block_first_attempt.using(priority=n).enqueue(f"r{n}")
        ids.append(int(result.id))
        victim = start_worker("--max-tasks", "1", "--no-scheduler", env=FAST_LEASES)
        wait_until(
            lambda n=n: any(line.startswith(f"start r{n} 1 ") for line in read_records(record_dir)),
            message=f"run r{n} to start",
        )
        victim.kill()  # SIGKILL of its whole process group
    wait_until(
        lambda: not Run.objects.filter(status=RunStatus.RUNNING).exists(),
        timeout=60,
        message="every killed run to be rescued",
    )
    run_worker("--burst", "--no-scheduler", "--concurrency", "4")
    runs = list(Run.objects.filter(pk__in=ids))
    assert {run.status for run in runs} == {RunStatus.SUCCESSFUL}
    for run in runs:
        assert lost_errors(run) == 1, run.errors
        assert len(run.worker_ids) == 2
        assert run.return_value.startswith("done ")
    starts = [line for line in read_records(record_dir) if line.startswith("start ")]
    assert len(starts) == 20  # each run: the killed attempt and the one that finished
    assert rescuer.process.poll() is None  # the rescuer lives on


def test_a_prefetched_run_goes_back_without_a_lost_attempt(start_worker, run_worker, record_dir):
    blocking = tasks.block_first_attempt.enqueue("blocker")
    waiting = tasks.quick_with_timeout.using(priority=-5).enqueue(1)
    victim = start_worker("--concurrency", "1", "--no-scheduler", env=FAST_LEASES)
    # Claimed with the blocker, never started: the heartbeat marks it so in the database.
    wait_until(
        lambda: Run.objects.filter(pk=waiting.id, status="RUNNING", prefetched=True).exists(),
        message="the waiting run to be marked prefetched",
    )
    # The blocker's task has begun only once its start is written (a marked run waits for
    # that), so a kill before this line could rightly rescue the blocker as never started.
    wait_until(
        lambda: any(line.startswith("start blocker 1 ") for line in read_records(record_dir)),
        message="the blocker to start",
    )
    victim.kill()
    start_worker("--queue", "emails", "--no-scheduler", env=FAST_LEASES)
    wait_until(
        lambda: not Run.objects.filter(status=RunStatus.RUNNING).exists(),
        timeout=30,
        message="both runs rescued",
    )
    prefetched = Run.objects.get(pk=waiting.id)
    assert prefetched.status == RunStatus.READY
    assert prefetched.errors == [] and prefetched.worker_ids == []
    started = Run.objects.get(pk=blocking.id)
    assert lost_errors(started) == 1


def test_a_frozen_workers_late_outcome_is_refused(start_worker, record_dir, tmp_path):
    release = tmp_path / "release"
    result = tasks.fenced_probe.enqueue(str(release))
    frozen = start_worker("--no-scheduler", env=FAST_LEASES)
    wait_until(lambda: "probe 1" in read_records(record_dir), message="attempt 1 to start")
    frozen.freeze()
    try:
        rescuer = start_worker("--no-scheduler", env=FAST_LEASES)
        wait_until(
            lambda: Run.objects.filter(pk=result.id, status=RunStatus.SUCCESSFUL).exists(),
            timeout=60,  # a lease to run out, a rescue, a new worker's claim: slow under load
            message=lambda: (
                f"the rescued attempt to finish; the run: {run_state(result.id)}\n"
                f"rescuer said:\n{rescuer.output}"
            ),
        )
    finally:
        release.write_text("go")
        frozen.thaw()
    frozen.wait_for_output("discarded", timeout=30)
    run = Run.objects.get(pk=result.id)
    assert run.status == RunStatus.SUCCESSFUL
    assert run.return_value == "second"  # the rescued attempt's result stands
    assert lost_errors(run) == 1


def test_a_task_past_its_timeout_is_killed_with_its_children_and_retried(start_worker, tmp_path):
    pid_path = tmp_path / "pids"
    result = tasks.sleep_past_timeout.enqueue(str(pid_path))
    others = [tasks.quick_with_timeout.enqueue(n) for n in range(3)]
    start_worker("--concurrency", "2", "--no-scheduler")
    wait_until(
        lambda: Run.objects.filter(pk=result.id, status=RunStatus.FAILED).exists(),
        timeout=60,
        message="the run to fail after two timed-out attempts",
    )
    run = Run.objects.get(pk=result.id)
    assert [e["exception_class_path"] for e in run.errors] == [
        "taskmill.exceptions.TaskTimeout"
    ] * 2
    assert len(run.worker_ids) == 2
    pids = [path.read_text().split() for path in tmp_path.glob("pids.*")]
    assert len(pids) == 2
    for child_pid, grandchild_pid in pids:
        wait_until(lambda p=int(child_pid): not process_alive(p), timeout=10, message="child gone")
        wait_until(
            lambda p=int(grandchild_pid): not process_alive(p),
            timeout=10,
            message="grandchild gone",
        )
    for other in others:
        wait_until(lambda o=other: Run.objects.get(pk=o.id).status == RunStatus.SUCCESSFUL)
        assert Run.objects.get(pk=other.id).return_value == other.args[0] * 2


def test_atomic_rows_exist_once_after_sigkill_inside_the_body(start_worker, run_worker, record_dir):
    from tests.testapp.models import Effect

    start_worker("--queue", "emails", "--no-scheduler", env=FAST_LEASES)  # the rescuer
    ids = []
    for n in range(10):
        result = tasks.atomic_effect_then_block.using(priority=n).enqueue(f"a{n}")
        ids.append(int(result.id))
        victim = start_worker("--max-tasks", "1", "--no-scheduler", env=FAST_LEASES)
        wait_until(
            lambda n=n: f"inserted a{n} 1" in read_records(record_dir),
            message=f"a{n} to insert its row",
        )
        victim.kill()  # inside the body: the row is inserted, not committed
    wait_until(
        lambda: not Run.objects.filter(status=RunStatus.RUNNING).exists(),
        timeout=60,
        message="every killed run to be rescued",
    )
    run_worker("--burst", "--no-scheduler")
    runs = Run.objects.filter(pk__in=ids)
    assert set(runs.values_list("status", flat=True)) == {RunStatus.SUCCESSFUL}, [
        (run.pk, run.status, [e["traceback"][-300:] for e in run.errors]) for run in runs
    ]
    names = sorted(Effect.objects.values_list("name", flat=True))
    assert names == sorted(f"a{n}" for n in range(10))  # each exactly once
    inserted = Counter(line for line in read_records(record_dir) if line.startswith("inserted "))
    # Each body ran in two attempts, the killed one and the rescued one, never a third; only
    # the rescued one committed (above). Attempt 2's body may run more than once: an atomic
    # body is run again within its attempt after a deadlock, as MariaDB reported once in CI
    # while a killed worker's transaction was still being rolled back.
    assert set(inserted) == {f"inserted a{n} {attempt}" for n in range(10) for attempt in (1, 2)}
    assert all(inserted[f"inserted a{n} 1"] == 1 for n in range(10)), inserted


def test_a_worker_that_cannot_heartbeat_fences_itself(start_worker, record_dir):
    from django.db import connection, transaction

    from taskmill.models import Worker

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no row locks to hang one statement with")
    result = tasks.sleep_in_child.enqueue(300)
    worker = start_worker("--no-scheduler", env=FAST_LEASES)
    child_pid = int(
        wait_until(
            lambda: next(
                (line.split()[1] for line in read_records(record_dir) if line.startswith("child ")),
                None,
            ),
            message="the task to start in its child process",
        )
    )
    worker_id = wait_until(lambda: Worker.objects.values_list("pk", flat=True).first())
    # Hold the worker's row: its heartbeat hangs on it, as on a partitioned network.
    with transaction.atomic():
        Worker.objects.select_for_update().get(pk=worker_id)
        worker.wait_for_output("fencing itself", timeout=30)
        wait_until(
            lambda: not process_alive(child_pid), timeout=10, message="the child to be killed"
        )
    worker.wait_for_output("claiming again", timeout=30)
    # Its attempt was lost, not failed or cancelled (a fence is not the task's doing, nor a
    # stop request): written back as lost by the worker, or rescued once its lease ran out.
    run = wait_until(
        lambda: Run.objects.filter(pk=result.id).exclude(errors=[]).first(),
        timeout=30,
        message="the fenced attempt to be recorded",
    )
    assert [e["exception_class_path"] for e in run.errors] == ["taskmill.exceptions.WorkerLost"]
    assert run.status in (RunStatus.READY, RunStatus.RUNNING)  # going again
