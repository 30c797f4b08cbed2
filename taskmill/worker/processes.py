"""A pool of long-lived child processes that run work with a hard timeout.

Python cannot kill a thread, so work that must stop at a deadline runs in a child process,
which can be killed. Each child is a fresh interpreter (``taskmill.worker.child``), never a
fork of the threaded worker, and serves one call at a time, reused call after call. A child
that overran its timeout or was stopped gets SIGTERM (its ``finally`` blocks run), ``grace``
seconds, then SIGKILL of its whole process group (so processes the task started die too),
and is reaped; the next call starts a fresh one. Messages are JSON on dedicated pipes:
never pickle, and never stdin/stdout, which belong to the task.

``concurrent.futures.ProcessPoolExecutor`` is no use here: it cannot kill one task, and one
dead child breaks the whole pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ..exceptions import TaskmillError
from . import child as child_program

# How often a waiting caller looks at its `stop` event (an Event has no fd to wait on).
POLL = 0.05
# Once a child's reply pipe is at EOF it is exiting: look for its exit more often.
EXIT_POLL = 0.005
# django.setup() and autodiscover() in a new child; past this something is badly wrong.
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Killed:
    """A call that got no reply: "timeout", "stopped" or "crashed" (``detail`` says how)."""

    reason: str
    pid: int
    detail: str = ""


class ChildStartError(TaskmillError, RuntimeError):
    """A new child could not get ready: django.setup(), autodiscover or the handler import
    failed. A configuration error, not the fault of the call's payload."""


class _Child:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.requests: Connection | None = None
        self.replies: Connection | None = None
        self.lifeline = -1  # the write end; the child dies when it closes (we die)
        # Set when kill_all/shutdown killed the child under its caller's feet: the caller
        # then reports Killed(<this>) rather than a crash.
        self.killed = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (see ProcessPool._finish)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
    except ChildProcessError:
        return True


def _describe(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"the child was killed by {signal.Signals(-returncode).name}"
        return f"the child was killed by signal {-returncode}"
    return f"the child exited with code {returncode}"


class ProcessPool:
    def __init__(
        self,
        handler: str,
        *,
        max_children: int,
        grace: float = 3.0,
        env: dict[str, str] | None = None,
    ) -> None:
        """``handler`` is "package.module:function", called in a child with each payload."""
        self._handler = handler
        self._max_children = max_children
        self._grace = grace
        self._env = dict(env or {})
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()  # started or starting, until reaped
        self._closed = False
        # PR_SET_PDEATHSIG fires when the *thread* that started the child ends, not the
        # process: a caller thread may be short-lived, so one long-lived thread starts them.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="taskmill-child-spawner")

    # -- public ---------------------------------------------------------------------------

    def call(
        self, payload: dict[str, Any], *, timeout: float | None, stop: threading.Event | None = None
    ) -> dict[str, Any] | Killed:
        data = json.dumps(payload).encode()  # a TypeError here leaves the pool untouched
        while True:
            child, fresh = self._acquire()
            try:
                if fresh and (killed := self._start(child, stop)):
                    return killed
                assert child.requests is not None
                try:
                    child.requests.send_bytes(data)
                except OSError:
                    # Dead before it got the payload: killed by kill_all(), or from outside
                    # while idle (then another child can serve).
                    code = self._finish(child, self._grace)
                    if child.killed:
                        return Killed(child.killed, child.pid)
                    if fresh:
                        return Killed("crashed", child.pid, _describe(code))
                    continue
                deadline = None if timeout is None else time.monotonic() + timeout
                return self._outcome(child, self._receive(child, deadline, stop))
            except BaseException:
                # The caller itself was interrupted (KeyboardInterrupt...): leave no orphan.
                if child.process is not None and child in self._children:
                    self._kill_group(child)
                    self._finish(child, 0)
                raise

    def kill_all(self) -> None:
        """SIGKILL every child's group now; calls in progress return Killed("stopped")."""
        with self._cond:
            idle, self._idle = self._idle, []
            for child in self._children:
                child.killed = "stopped"
                if child.process is not None:
                    self._kill_group(child)
        for child in idle:  # busy children are reaped by their callers
            self._finish(child, 0)

    def shutdown(self) -> None:
        """Idle children exit cleanly, busy ones are killed; all are reaped."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            for child in self._children.difference(idle):
                child.killed = "stopped"
                if child.process is not None:
                    self._kill_group(child)
        for child in idle:
            assert child.requests is not None
            child.requests.close()  # EOF on its request pipe: the child returns from main()
        for child in idle:
            self._finish(child, self._grace)
        with self._cond:
            # Busy children's callers reap them within a POLL of the kill.
            self._cond.wait_for(lambda: not self._children, timeout=self._grace + 10)
        self._spawner.shutdown(wait=False)

    def pids(self) -> list[int]:
        with self._cond:
            return [child.pid for child in self._children if child.process is not None]

    # -- children -------------------------------------------------------------------------

    def _acquire(self) -> tuple[_Child, bool]:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the process pool is shut down")
                if self._idle:
                    return self._idle.pop(), False
                if len(self._children) < self._max_children:
                    child = _Child()
                    self._children.add(child)
                    return child, True
                self._cond.wait()

    def _start(self, child: _Child, stop: threading.Event | None) -> Killed | None:
        """Start the child and wait until it is ready. Killed if stopped meanwhile."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        child.requests = Connection(request_w, readable=False)
        child.replies = Connection(reply_r, writable=False)
        child.lifeline = lifeline_w
        # The file by path, not `-m taskmill.worker.child`: -m would import taskmill.worker
        # first, whose __init__ imports models before django.setup(). -P: do not put the
        # file's directory on sys.path.
        argv = [sys.executable, "-P", child_program.__file__, self._handler]
        argv += [str(request_r), str(reply_w), str(lifeline_r), str(os.getpid())]
        # The parent's sys.path, so the child imports the same project the same way.
        path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
        env = {**os.environ, "PYTHONPATH": path, **self._env}
        try:
            process = self._spawner.submit(
                subprocess.Popen,
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(request_r, reply_w, lifeline_r),
                start_new_session=True,  # its own group, so one killpg reaches its processes
            ).result()
        except BaseException:
            self._close(child)
            raise
        finally:
            for fd in (request_r, reply_w, lifeline_r):
                os.close(fd)
        with self._cond:
            child.process = process
            if child.killed:  # kill_all() came while it was starting
                self._kill_group(child)
        message = self._receive(child, time.monotonic() + START_TIMEOUT, stop)
        if isinstance(message, dict) and "ready" in message:
            return None
        if message == "stopped" or child.killed:
            outcome = self._outcome(child, "stopped")
            assert isinstance(outcome, Killed)
            return outcome
        if message == "timeout":
            self._kill_group(child)
        code = self._finish(child, self._grace)
        if isinstance(message, dict) and "start_error" in message:
            why = message["start_error"]["__child_error__"]["traceback"]
        else:
            why = f"not ready after {START_TIMEOUT:.0f} s" if message == "timeout" else ""
            why = why or _describe(code)
        raise ChildStartError(f"a child for {self._handler} failed to start: {why}")

    def _receive(
        self, child: _Child, deadline: float | None, stop: threading.Event | None
    ) -> dict[str, Any] | str:
        """The child's next message, or why none came: "timeout", "stopped" or "eof"."""
        assert child.replies is not None
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if wait([child.replies], POLL if remaining is None else max(0, min(POLL, remaining))):
                try:
                    return json.loads(child.replies.recv_bytes())
                except (EOFError, OSError, ValueError):
                    return "eof"
            if child.killed or (stop is not None and stop.is_set()):
                return "stopped"
            if remaining is not None and remaining <= 0:
                return "timeout"

    def _outcome(self, child: _Child, message: dict[str, Any] | str) -> dict[str, Any] | Killed:
        if isinstance(message, dict):
            self._release(child)
            return message
        if child.killed:  # kill_all() or shutdown() already sent SIGKILL
            self._finish(child, self._grace)
            return Killed(child.killed, child.pid)
        if message == "eof":
            # Died by itself. The grace only waits for its exit, to report its real status.
            return Killed("crashed", child.pid, _describe(self._finish(child, self._grace)))
        # SIGTERM raises Interrupted in the child's main thread: its `finally` blocks run.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        self._finish(child, self._grace)
        return Killed(message, child.pid)

    def _release(self, child: _Child) -> None:
        """Back to the idle list after a normal reply, unless the pool is killing children."""
        with self._cond:
            keep = not (child.killed or self._closed)
            if keep:
                self._idle.append(child)
                self._cond.notify()
        if not keep:
            self._kill_group(child)
            self._finish(child, 0)

    def _kill_group(self, child: _Child) -> None:
        # The child's pid is its group id (start_new_session). It is not reaped yet, so the id
        # cannot have been reused by an unrelated group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)

    def _finish(self, child: _Child, grace: float) -> int:
        """Give the child up to ``grace`` s to exit, SIGKILL its group, reap it; its status."""
        assert child.replies is not None
        deadline = time.monotonic() + grace
        pipe_open = True
        while not _exited(child.pid) and (remaining := deadline - time.monotonic()) > 0:
            if pipe_open:
                # Drain: a child blocked writing a reply nobody reads could not exit.
                if wait([child.replies], min(POLL, remaining)):
                    try:
                        child.replies.recv_bytes()
                    except (EOFError, OSError):
                        pipe_open = False
            else:
                time.sleep(min(EXIT_POLL, remaining))
        # Killed before it is reaped: the group may hold processes the task left behind.
        self._kill_group(child)
        assert child.process is not None
        code = child.process.wait()
        self._close(child)
        return code

    def _close(self, child: _Child) -> None:
        for connection in (child.requests, child.replies):
            if connection is not None:
                connection.close()
        if child.lifeline >= 0:
            os.close(child.lifeline)
            child.lifeline = -1
        with self._cond:
            self._children.discard(child)
            self._cond.notify_all()
