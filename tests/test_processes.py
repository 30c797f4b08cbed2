"""The process pool for tasks with a hard timeout: real children, real signals, no mocks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmill.worker.processes import Killed, ProcessPool

from .conftest import ROOT, only_on, wait_until

# Real processes and commands: slow, so the LTS leg leaves it to the main leg (scripts/test).
pytestmark = [
    pytest.mark.slow,
    only_on("sqlite", "the pool's children, signals and kills do not depend on the database"),
]

HANDLER = "tests.testapp.child_handlers:dispatch"


@pytest.fixture
def make_pool() -> Iterator[Callable[..., ProcessPool]]:
    pools: list[ProcessPool] = []

    def make(max_children: int = 1, grace: float = 3.0, **kwargs: Any) -> ProcessPool:
        pool = ProcessPool(HANDLER, max_children=max_children, grace=grace, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown()


def reaped(pid: int) -> bool:
    """No such process at all: exited *and* reaped (a zombie still answers kill 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def dead(pid: int) -> bool:
    """Not running. For processes the test does not parent: their reaper is PID 1's business,
    and a PID 1 that does not reap leaves zombies, which are dead all the same."""
    if reaped(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def wait_gone(pid: int, check: Callable[[int], bool] = reaped, timeout: float = 5.0) -> None:
    wait_until(lambda: check(pid), timeout, message=f"process {pid} to be gone")


def read_pids(path: Path) -> list[int]:
    wait_until(path.exists, 30, message=f"{path} to be written")
    return [int(word) for word in path.read_text().split()]


def call_in_thread(pool: ProcessPool, payload: dict[str, Any], **kwargs: Any) -> Callable[[], Any]:
    """Start pool.call in a new thread; returns a function that joins it and gives the result."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(pool.call(payload, **kwargs)))
    thread.start()

    def join() -> Any:
        thread.join(30)
        assert not thread.is_alive(), "the call did not return"
        return result[0]

    return join


def test_calls_are_served_by_one_long_lived_child(make_pool) -> None:
    pool = make_pool(env={"TASKMILL_TEST_CHILD_VALUE": "from the pool"})
    # The first call comes from a thread that then ends. PR_SET_PDEATHSIG fires when the
    # *thread* that started the child ends: a pool starting children from its callers'
    # threads would lose this child now.
    first = call_in_thread(pool, {"action": "echo", "value": [1, "a"]}, timeout=10)()
    second = pool.call({"action": "echo", "value": 2}, timeout=None)
    assert first["echo"] == [1, "a"]
    assert second["echo"] == 2
    assert first["pid"] == second["pid"] == pool.pids()[0] != os.getpid()
    pid = first["pid"]
    # The child set Django up with the worker's settings and discovered the apps' tasks.
    env = pool.call({"action": "env", "name": "TASKMILL_TEST_CHILD_VALUE"}, timeout=10)
    assert env == {
        "value": "from the pool",
        "settings": "tests.settings",
        "testapp_tasks_imported": True,
    }
    # Errors the child can report leave it serving.
    error = pool.call({"action": "raise"}, timeout=10)
    assert error["__child_error__"]["exception_class_path"] == "builtins.ValueError"
    assert "handler failed on purpose" in error["__child_error__"]["traceback"]
    error = pool.call({"action": "not_a_dict"}, timeout=10)
    assert error["__child_error__"]["exception_class_path"] == "builtins.TypeError"
    assert pool.call({"action": "echo"}, timeout=10)["pid"] == pid


def test_a_bad_payload_and_a_crash_leave_the_pool_working(make_pool) -> None:
    pool = make_pool()
    pid = pool.call({"action": "echo"}, timeout=10)["pid"]
    with pytest.raises(TypeError):
        pool.call({"action": "echo", "value": object()}, timeout=10)
    assert pool.call({"action": "echo", "value": 1}, timeout=10) == {"echo": 1, "pid": pid}
    # A child that dies by itself is reported, reaped and replaced.
    outcome = pool.call({"action": "exit", "code": 3}, timeout=10)
    assert outcome == Killed("crashed", pid, "the child exited with code 3")
    assert reaped(pid)
    assert pool.call({"action": "echo"}, timeout=10)["pid"] != pid


def test_timeout_terminates_with_grace_then_a_fresh_child_serves(make_pool, tmp_path) -> None:
    pool = make_pool(grace=3.0)
    marker = tmp_path / "finally"
    outcome = pool.call(
        {"action": "sleep", "pid_file": str(tmp_path / "pid"), "marker": str(marker)},
        timeout=1.0,
    )
    [pid] = read_pids(tmp_path / "pid")
    assert outcome == Killed("timeout", pid)
    # SIGTERM raised in the child, so its `finally` ran before the kill.
    assert marker.read_text() == "finally ran"
    wait_gone(pid)
    assert pid not in pool.pids()
    fresh = pool.call({"action": "echo"}, timeout=10)
    assert fresh["pid"] != pid


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(make_pool, tmp_path) -> None:
    pool = make_pool(grace=1.0)
    started = time.monotonic()
    outcome = pool.call(
        {"action": "ignore_sigterm", "pid_file": str(tmp_path / "pid")}, timeout=0.5
    )
    elapsed = time.monotonic() - started
    [pid] = read_pids(tmp_path / "pid")
    assert outcome == Killed("timeout", pid)
    assert elapsed >= 1.5  # the timeout, then the whole grace: SIGTERM did nothing
    wait_gone(pid)


def test_timeout_kills_the_processes_the_task_started(make_pool, tmp_path) -> None:
    pool = make_pool(grace=1.0)
    outcome = pool.call({"action": "grandchild", "pid_file": str(tmp_path / "pids")}, timeout=1.0)
    pid, grandchild = read_pids(tmp_path / "pids")
    try:
        assert outcome == Killed("timeout", pid)
        wait_gone(pid)
        wait_gone(grandchild, dead)
    finally:
        cleanup(grandchild)


def cleanup(*pids: int) -> None:
    # Only matters when the test failed: leave no `sleep 300` behind.
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_stop_event_kills_the_call(make_pool, tmp_path) -> None:
    pool = make_pool(grace=1.0)
    stop = threading.Event()
    pid_file = tmp_path / "pid"

    def stop_once_started() -> None:
        wait_until(pid_file.exists, 30)
        stop.set()

    stopper = threading.Thread(target=stop_once_started)
    stopper.start()
    outcome = pool.call({"action": "sleep", "pid_file": str(pid_file)}, timeout=60, stop=stop)
    stopper.join()
    [pid] = read_pids(pid_file)
    assert outcome == Killed("stopped", pid)
    wait_gone(pid)


def test_kill_all_stops_calls_in_progress(make_pool, tmp_path) -> None:
    pool = make_pool(max_children=2)
    joins = [
        call_in_thread(pool, {"action": "sleep", "pid_file": str(tmp_path / f"pid{n}")}, timeout=60)
        for n in range(2)
    ]
    pids = [read_pids(tmp_path / f"pid{n}")[0] for n in range(2)]
    pool.kill_all()
    assert {join() for join in joins} == {Killed("stopped", pid) for pid in pids}
    for pid in pids:
        wait_gone(pid)
    assert pool.pids() == []
    assert pool.call({"action": "echo"}, timeout=10)["pid"] not in pids


def test_shutdown_lets_idle_children_exit_cleanly(make_pool, tmp_path) -> None:
    pool = make_pool()
    marker = tmp_path / "atexit"
    pid = pool.call({"action": "atexit", "marker": str(marker)}, timeout=10)["pid"]
    pool.shutdown()
    # atexit handlers run only on a normal interpreter exit, never on a kill.
    assert marker.read_text() == "clean exit"
    assert reaped(pid)
    assert pool.pids() == []
    with pytest.raises(RuntimeError):
        pool.call({"action": "echo"}, timeout=10)


def test_two_calls_run_at_once_in_two_children(make_pool, tmp_path) -> None:
    pool = make_pool(max_children=2)
    payload = {"action": "rendezvous", "directory": str(tmp_path)}
    joins = [call_in_thread(pool, payload, timeout=30) for _ in range(2)]
    first, second = (join() for join in joins)
    # Each waited for the other to arrive: they cannot have run one after the other.
    assert first["saw_both"] and second["saw_both"]
    assert first["pid"] != second["pid"]
    assert sorted(pool.pids()) == sorted([first["pid"], second["pid"]])


PARENT = """
import sys
import django

django.setup()
from taskmill.worker.processes import ProcessPool

pool = ProcessPool("tests.testapp.child_handlers:dispatch", max_children=1)
pool.call({"action": "grandchild", "pid_file": sys.argv[1]}, timeout=None)
"""


def test_children_die_with_their_worker(tmp_path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    pid_file = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file)], env=env, cwd=ROOT)
    pids: list[int] = []
    try:
        pids = child, grandchild = read_pids(pid_file)
        assert not dead(child) and not dead(grandchild)
        parent.send_signal(signal.SIGKILL)  # no cleanup of any kind in the worker
        parent.wait(10)
        wait_gone(child, dead)
        wait_gone(grandchild, dead)
    finally:
        parent.kill()
        parent.wait(10)
        cleanup(*pids)
