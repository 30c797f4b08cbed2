"""``taskmill worker --processes N``: a supervisor and its worker processes, all real, with
real signals."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time

import pytest

from taskmill.compat import TaskResultStatus
from taskmill.models import Run
from tests.conftest import (
    FAST_LEASES,
    WorkerProcess,
    only_on,
    process_alive,
    read_records,
    wait_until,
)
from tests.testapp import process_tasks, tasks

# Real supervisors, children and signals. The supervisor never touches the database beyond
# its start-up check (its children are plain workers, tested on every database), so this runs
# on one production database, by the main leg.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    only_on("mysql", "the supervisor's process handling does not depend on the database"),
]

STARTED = re.compile(r"Started worker process (\d+) \(#(\d+),")


def children(supervisor: WorkerProcess) -> dict[int, int]:
    """Slot number -> pid of the latest child started in it, from the supervisor's log."""
    found: dict[int, int] = {}
    for line in supervisor.lines:
        if match := STARTED.search(line):
            found[int(match[2])] = int(match[1])
    return found


def started(supervisor: WorkerProcess, count: int) -> dict[int, int]:
    """Wait until ``count`` children have logged their start as workers; slot -> pid."""
    supervisor.wait_for_output("Worker #", count=count, timeout=60)
    supervisor.wait_for_output(" started: database=", count=count, timeout=60)
    return children(supervisor)


def status(result) -> str:
    return Run.objects.get(pk=int(result.id)).status


def worker_pid(worker_id: str) -> int:
    """The pid inside a worker id, ``label@host:pid:random``."""
    return int(worker_id.rsplit(":", 2)[1])


@pytest.mark.slow
def test_every_process_runs_tasks_and_burst_exits_when_the_queue_is_empty(run_worker, tmp_path):
    # Each `meet` waits until tasks of both processes are inside at once: they can only all
    # succeed if two processes really ran them side by side.
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    met = process_tasks.meet.enqueue_many([((str(meeting), 2), {})] * 4)
    added = tasks.add.enqueue_many([((i, i), {}) for i in range(30)])
    supervisor = run_worker("--burst", "--processes", "2", "--label", "crew")
    pids = set(children(supervisor).values())
    assert len(pids) == 2
    for result in met:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL, supervisor.output
    assert {result.return_value for result in met} == pids
    assert [status(result) for result in added] == ["SUCCESSFUL"] * 30
    # Each child is a worker of its own, labelled with its slot.
    labels = {run.worker_ids[0].split("@")[0] for run in Run.objects.all()}
    assert labels <= {"crew#1", "crew#2"} and len(labels) == 2
    assert supervisor.output.count("finished (exit code 0)") == 2
    assert "All 2 worker processes stopped" in supervisor.output
    assert not any(process_alive(pid) for pid in pids)


@pytest.mark.slow
def test_options_reach_every_child_and_a_child_done_on_purpose_is_not_replaced(run_worker):
    # --max-tasks is each child's: two children run three each, exit 0 and stay ended, and
    # the supervisor exits 0 once both have. --queue and --concurrency reach them too.
    high = tasks.noop.using(queue_name="high").enqueue_many([((), {})] * 10)
    default = tasks.noop.enqueue_many([((), {})] * 3)
    supervisor = run_worker(
        "--processes", "2", "--max-tasks", "3", "--queue", "high", "--concurrency", "2"
    )
    assert sorted(status(result) for result in high) == ["READY"] * 4 + ["SUCCESSFUL"] * 6
    assert [status(result) for result in default] == ["READY"] * 3
    assert supervisor.output.count("finished (exit code 0)") == 2
    assert supervisor.output.count("Started worker process") == 2
    assert supervisor.output.count("queues=high concurrency=2") == 2


@pytest.mark.slow
def test_a_killed_child_is_replaced_and_its_run_is_not_lost(start_worker, tmp_path):
    supervisor = start_worker("--processes", "2", "--poll-interval", "0.2", env=FAST_LEASES)
    before = started(supervisor, 2)
    gate = tmp_path / "gate"
    blocked = tasks.wait_for_file.enqueue(str(gate), 120)
    wait_until(lambda: status(blocked) == "RUNNING", 30, message="the run to start")
    holder = worker_pid(Run.objects.get(pk=int(blocked.id)).worker_id)
    slot = next(number for number, pid in before.items() if pid == holder)

    os.kill(holder, signal.SIGKILL)
    supervisor.wait_for_output(f"Worker process {holder} (#{slot}) was killed by SIGKILL")
    wait_until(lambda: children(supervisor)[slot] != holder, 30, message="a new child in that slot")
    replacement = children(supervisor)[slot]
    assert process_alive(replacement)
    assert children(supervisor)[3 - slot] == before[3 - slot], "the other child goes on"

    gate.touch()
    more = tasks.add.enqueue_many([((i, 1), {}) for i in range(10)])
    # The lease rescue gives the killed child's run to a live one, which finishes it.
    wait_until(lambda: status(blocked) == "SUCCESSFUL", 60, message=lambda: supervisor.output)
    wait_until(lambda: all(status(r) == "SUCCESSFUL" for r in more), 30)
    blocked.refresh()
    assert len(blocked.worker_ids) == 2 and worker_pid(blocked.worker_ids[0]) == holder
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0


@pytest.mark.slow
def test_a_child_that_keeps_dying_is_restarted_with_a_growing_back_off(start_worker):
    supervisor = start_worker("--processes", "2", "--no-scheduler")
    pids = started(supervisor, 2)
    for delay in ["0.5s", "1.0s", "2.0s"]:
        victim = children(supervisor)[1]
        os.kill(victim, signal.SIGKILL)
        death = f"Worker process {victim} (#1) was killed by SIGKILL"
        supervisor.wait_for_output(death)
        line = next(line for line in supervisor.lines if death in line)
        assert f"starting another in {delay}" in line
        wait_until(
            lambda victim=victim: children(supervisor)[1] != victim,
            30,
            message=lambda: supervisor.output,
        )
    assert children(supervisor)[2] == pids[2]
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0


@pytest.mark.slow
def test_sigterm_stops_every_child_gracefully(start_worker, tmp_path, record_dir):
    supervisor = start_worker("--processes", "2")
    pids = started(supervisor, 2)
    gate = tmp_path / "gate"
    blocked = tasks.wait_for_file.enqueue(str(gate), 120)
    wait_until(lambda: any("waiting" in line for line in read_records(record_dir)), 30)

    supervisor.signal(signal.SIGTERM)
    supervisor.wait_for_output("SIGTERM: stopping 2 worker process(es) gracefully")
    supervisor.wait_for_output("stopping: finishing", count=2)
    # The child running the task waits for it; the other stops at once.
    supervisor.wait_for_output("stopped: it exited with code 0", count=1)
    assert supervisor.process.poll() is None, "the supervisor waits for its children"
    assert status(blocked) == "RUNNING"
    gate.touch()
    assert supervisor.wait(60) == 0, supervisor.output
    assert status(blocked) == "SUCCESSFUL"
    assert supervisor.output.count("stopped: it exited with code 0") == 2
    assert "interrupted" not in supervisor.output
    assert not any(process_alive(pid) for pid in pids.values())


@pytest.mark.slow
def test_ctrl_c_reaching_every_process_is_still_one_graceful_stop(
    start_worker, tmp_path, record_dir
):
    # A terminal's Ctrl-C goes to the whole foreground group: each child hears it from the
    # terminal and again from the supervisor, and must take both as one graceful stop.
    supervisor = start_worker("--processes", "2")
    started(supervisor, 2)
    gate = tmp_path / "gate"
    blocked = tasks.wait_for_file.enqueue(str(gate), 120)
    wait_until(lambda: any("waiting" in line for line in read_records(record_dir)), 30)
    os.killpg(supervisor.process.pid, signal.SIGINT)
    supervisor.wait_for_output("SIGINT: stopping 2 worker process(es) gracefully")
    supervisor.wait_for_output("stopped: it exited with code 0", count=1)
    gate.touch()
    assert supervisor.wait(60) == 0, supervisor.output
    assert status(blocked) == "SUCCESSFUL", supervisor.output
    assert "interrupted" not in supervisor.output


@pytest.mark.slow
def test_a_stop_signal_arriving_while_a_stopped_child_exits_does_not_kill_it(start_worker):
    # The race behind a flaky Ctrl-C: a child stopped by the terminal's signal got its
    # supervisor's relay while the interpreter was shutting down, after Python had given its
    # handlers back to the system, and died "killed by SIGTERM". Here the child is showered
    # with SIGTERM from its stop until it is gone: every one must find it still stopping
    # gracefully or ignoring them.
    supervisor = start_worker("--processes", "2")
    child = started(supervisor, 2)[1]
    os.kill(child, signal.SIGTERM)
    supervisor.wait_for_output(f":{child}:")  # its worker id, in its "stopping" line
    supervisor.wait_for_output("stopping: finishing")
    while process_alive(child):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        time.sleep(0.001)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0, supervisor.output
    # Reaped before or after the supervisor's own stop, as the two signals race: either way
    # it exited 0, never killed by a signal.
    exited = (
        f"Worker process {child} (#1) stopped: it exited with code 0",
        f"Worker process {child} (#1) finished (exit code 0)",
    )
    assert any(line in supervisor.output for line in exited), supervisor.output
    assert "killed by" not in supervisor.output, supervisor.output


@pytest.mark.slow
def test_sighup_replaces_every_child_gracefully(start_worker):
    supervisor = start_worker("--processes", "2", "--no-scheduler")
    before = started(supervisor, 2)
    supervisor.signal(signal.SIGHUP)
    supervisor.wait_for_output("stopped for a restart", count=2)
    after = started(supervisor, 4)
    assert set(after.values()).isdisjoint(before.values())
    assert not any(process_alive(pid) for pid in before.values())
    result = tasks.add.enqueue(2, 3)
    wait_until(lambda: status(result) == "SUCCESSFUL", 30, message=lambda: supervisor.output)
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0


@pytest.mark.slow
def test_a_second_signal_makes_the_children_give_back_their_runs_at_once(
    start_worker, tmp_path, record_dir
):
    supervisor = start_worker("--processes", "2")
    started(supervisor, 2)
    blocked = tasks.wait_for_file.enqueue(str(tmp_path / "never"), 600)
    wait_until(lambda: read_records(record_dir), 30)
    supervisor.signal(signal.SIGINT)
    supervisor.wait_for_output("stopping: finishing", count=2)
    supervisor.signal(signal.SIGINT)
    assert supervisor.wait(30) == 1
    assert "SIGINT again" in supervisor.output
    run = Run.objects.get(pk=int(blocked.id))
    assert (run.status, run.attempt, run.worker_id) == ("READY", 1, ""), supervisor.output


@pytest.mark.slow
def test_children_stop_on_their_own_when_the_supervisor_is_killed(start_worker):
    supervisor = start_worker("--processes", "2", "--no-scheduler")
    pids = started(supervisor, 2)
    os.kill(supervisor.process.pid, signal.SIGKILL)  # the supervisor alone, not its group
    for pid in pids.values():
        wait_until(lambda pid=pid: not process_alive(pid), 60, message=f"child {pid} to exit")
    # Gracefully: each said it was stopping and that it stopped (through the shared pipe).
    supervisor.wait_for_output("stopped after 0 task(s)", count=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--processes", "0"], "must be at least 1"),
        (["--processes", "-2"], "must be at least 1"),
        (["--processes", "two"], "invalid positive_int value"),
        (["--processes", "2", "--reload"], "--reload cannot be combined with --processes"),
    ],
)
def test_bad_process_counts_are_refused_clearly(run_worker, args, message):
    worker = run_worker(*args, "--burst", expect_code=None)
    assert worker.process.returncode != 0
    assert message in worker.output
    assert "Traceback" not in worker.output
    assert "Started worker process" not in worker.output
