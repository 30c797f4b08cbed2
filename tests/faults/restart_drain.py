"""A database server restarted while two workers drain 1,500 runs that each write a row.

    python -m tests.faults.restart_drain --db postgresql|mysql

Run by tests/faults/test_database_restart.py, in a process of its own: like the chaos soak
it starts a private server from the machine's binaries (tests/faults/soak/servers.py), on
its own port and data directory, because restarting the shared one would break the other
test runs using it. It migrates a fresh database there, enqueues the runs of a plain Django
``@task`` (tests.testapp.fault_tasks.write_row), starts two real workers with the default
settings, restarts the server as an operator would (``pg_ctl restart -m fast``; MariaDB: a
SIGTERM, a clean shutdown, then a start) once a fifth of the runs are done, waits for the
rest, stops the workers and prints what it found as one line, ``RESULT <json>``, for the
test to judge.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = 1500
RESTART_AFTER = RUNS // 5  # runs done when the server goes down: mid-drain
WORKERS = 2


def main(argv: list[str]) -> int:
    from .soak.__main__ import create_database
    from .soak.servers import server_for

    parser = argparse.ArgumentParser(prog="python -m tests.faults.restart_drain")
    parser.add_argument("--db", choices=["postgresql", "mysql"], required=True)
    vendor = parser.parse_args(argv).db
    # A SIGTERM (a test timeout) unwinds like Ctrl-C: workers and server are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix=f"taskmill-restart-{vendor}-"))
    server = server_for(vendor)
    server.start()
    try:
        name = create_database(vendor, server, work)
        env = {
            **server.env(),
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TASKMILL_TEST_DB": vendor,
            "TASKMILL_TEST_DB_NAME": name,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(env)  # this process's Django talks to the same database
        result = drain_through_restart(server, {**os.environ}, work)
    except BaseException:
        print(f"restart_drain: work folder kept: {work}", flush=True)
        raise
    finally:
        server.stop()
    if result["drained"] and result["statuses"] == {"SUCCESSFUL": RUNS}:
        shutil.rmtree(work, ignore_errors=True)
        result["worker_outputs"] = None
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def drain_through_restart(server, env: dict[str, str], work: Path) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    from taskmill.models import Run
    from tests.conftest import WorkerProcess
    from tests.testapp.fault_tasks import write_row

    from .soak.producer import with_database_retries

    call_command("migrate", verbosity=0, run_syncdb=True)
    write_row.enqueue_many([((f"row-{n}",), {}) for n in range(RUNS)])
    workers = [
        WorkerProcess(["--no-reload", "--no-scheduler", "--concurrency", "4"], env)
        for _ in range(WORKERS)
    ]
    try:
        for worker in workers:
            worker.wait_for_output("started", timeout=60)
        done = Run.objects.filter(status="SUCCESSFUL").count
        wait_for(lambda: done() >= RESTART_AFTER, 120, "the first runs done")
        done_before = done()
        down_for = server.restart(crash=False)
        left = Run.objects.exclude(status__in=["SUCCESSFUL", "FAILED", "CANCELLED"]).count
        drained = wait_for(lambda: with_database_retries(left) == 0, 180, "the drain")
        for worker in workers:
            worker.signal()
        codes = [worker.wait(60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    outputs = work / "workers"
    outputs.mkdir()
    for number, worker in enumerate(workers):
        (outputs / f"worker-{number}.out").write_text(worker.output)
    return {
        "vendor": server.vendor,
        "runs": RUNS,
        "done_before_restart": done_before,
        "down_for": round(down_for, 2),
        "drained": drained,
        "exit_codes": codes,
        "worker_outputs": str(outputs),
        **findings(),
    }


def findings() -> dict:
    """Statuses, the rows each run wrote, and the errors of every run that has some."""
    from taskmill.exceptions import counts_as_lost
    from taskmill.models import Run
    from tests.testapp.models import Effect

    rows = Counter(Effect.objects.values_list("name", flat=True))
    runs = list(Run.objects.values("id", "status", "args", "errors", "attempt"))
    interrupted = [run for run in runs if any(counts_as_lost(e) for e in run["errors"])]
    return {
        "statuses": Counter(run["status"] for run in runs),
        "missing_rows": [run["id"] for run in runs if rows[run["args"][0]] == 0],
        # Written more than once: only a run sent again may (at-least-once, as after a lost
        # worker: its first attempt's INSERT may have committed before the connection died).
        "doubled_rows": {
            run["id"]: rows[run["args"][0]] for run in runs if rows[run["args"][0]] > 1
        },
        "interrupted": [run["id"] for run in interrupted],
        "not_successful": {
            run["id"]: [e["traceback"].strip().splitlines()[-1] for e in run["errors"]]
            for run in runs
            if run["status"] != "SUCCESSFUL"
        },
        # What stopped the interrupted runs: the class and the database's words.
        "interruptions": Counter(
            f"{e['exception_class_path']}: {e['traceback'].strip().splitlines()[-1][:120]}"
            for run in interrupted
            for e in run["errors"]
        ),
    }


def wait_for(condition, timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            print(f"restart_drain: gave up waiting for {what} after {timeout:g}s", flush=True)
            return False
        time.sleep(0.1)
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
