"""The program a ``ProcessPool`` child runs: ``python -P .../child.py HANDLER FDS... PPID``.

A fresh interpreter (never a fork of the threaded worker) that sets Django up once, then
serves calls one at a time: it reads a JSON payload from its request pipe, calls the handler
and writes the JSON reply to its reply pipe. The pipes are dedicated file descriptors, not
stdin/stdout, because task code prints to stdout. JSON only, never pickle.

It must never outlive its worker, or a task could go on running after its run was rescued
elsewhere: the kernel sends it SIGHUP when the worker dies (PR_SET_PDEATHSIG), and a thread
watches a lifeline pipe whose write end only the worker holds. Either one kills the child's
whole process group, which also holds any process the task started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

if __name__ == "__main__":
    # Run by path (see ProcessPool._start): be importable under the real name too, so that
    # there is one Interrupted class, whichever name code imports it by.
    sys.modules.setdefault("taskmill.worker.child", sys.modules["__main__"])

PR_SET_PDEATHSIG = 1

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class Interrupted(BaseException):
    """Raised in the child's main thread by SIGTERM (timeout or stop), so ``finally`` runs.

    A BaseException, so that task code catching ``Exception`` does not swallow it.
    """


def _kill_group(*_: object) -> None:
    # SIGKILL, not an exit: nothing of the task (threads, subprocesses) may go on running.
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _interrupt(*_: object) -> None:
    raise Interrupted


def _die_with_parent(parent_pid: int) -> None:
    signal.signal(signal.SIGHUP, _kill_group)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            # CDLL(None): the symbols already loaded, libc's among them (find_library would
            # run ldconfig in a subprocess).
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)
    # The worker may have died before prctl took effect: then nobody would signal us.
    if os.getppid() != parent_pid:
        _kill_group()


def _watch_lifeline(fd: int) -> None:
    # Blocks until EOF: only the worker holds the write end, so EOF means it is gone.
    with contextlib.suppress(OSError):
        while os.read(fd, 1):
            pass
    _kill_group()


def _load_handler(path: str) -> Handler:
    from django.utils.module_loading import import_string

    module, _, name = path.partition(":")
    return import_string(f"{module}.{name}")


def _error_reply(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    return {
        "__child_error__": {
            "exception_class_path": f"{cls.__module__}.{cls.__qualname__}",
            "traceback": "".join(traceback.format_exception(exc)),
        }
    }


def _serve(handler: Handler, requests: Connection, replies: Connection) -> None:
    while True:
        try:
            payload = json.loads(requests.recv_bytes())
        except EOFError:
            return  # the worker closed our pipe: a clean exit
        try:
            result = handler(payload)
            if not isinstance(result, dict):
                raise TypeError(f"the handler returned {type(result).__name__}, not a dict")
            reply = json.dumps(result).encode()
        except Exception as exc:
            # Interrupted and SystemExit are not caught: they end the child, as they should.
            reply = json.dumps(_error_reply(exc)).encode()
        replies.send_bytes(reply)


def main(argv: list[str]) -> int:
    handler_path, request_fd, reply_fd, lifeline_fd, parent_pid = argv
    fds = [int(request_fd), int(reply_fd), int(lifeline_fd)]
    # pass_fds made them inheritable; a process the task starts must not hold them, or the
    # worker would not see EOF on the reply pipe when this child dies.
    for fd in fds:
        os.set_inheritable(fd, False)
    _die_with_parent(int(parent_pid))
    threading.Thread(target=_watch_lifeline, args=(fds[2],), daemon=True).start()
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C in the worker's terminal is the worker's business (we are in our own session).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    requests = Connection(fds[0], writable=False)
    replies = Connection(fds[1], readable=False)
    try:
        import django

        django.setup()
        from taskmill import registry

        registry.autodiscover()
        handler = _load_handler(handler_path)
    except Exception as exc:
        replies.send_bytes(json.dumps({"start_error": _error_reply(exc)}).encode())
        return 1
    replies.send_bytes(json.dumps({"ready": os.getpid()}).encode())
    try:
        _serve(handler, requests, replies)
    finally:
        from django.db import connections

        connections.close_all()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Interrupted:
        sys.exit(128 + signal.SIGTERM)  # the exit status SIGTERM would have given
