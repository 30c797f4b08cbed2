"""The soak's checker: reads the database and every task's side-effect log, and counts what
went wrong.

What it proves, run by run:
- every run ended, in the state its kind expects (or CANCELLED when the soak cancelled or
  stopped it, or FAILED after too many lost attempts, which its errors then say); a run
  FAILED by a database error its worker did not count as a lost attempt (a restart or a cut
  session that failed it for good) is lost: the outage was the database's, not the task's;
- no attempt ran twice, and a run ran more often than once only when its errors account for
  each extra attempt (a lost worker, a timeout, a failure that was retried);
- an ``atomic=True`` run's row exists exactly once if it succeeded, never otherwise;
- each finished run with callbacks enqueued exactly the right callback, once;
- each (schedule, fire time) due in the window was enqueued exactly once;
- nothing is left RUNNING, leased, locked, or running in a stray child process, nor READY
  held back by a limit;
- no limit was exceeded and no limit's slot leaked (flow.py);
- every batch finished once its members ended, with each callback it must fire enqueued
  exactly once; pipelines passed their values; snoozes used no attempt (composition.py).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.utils.module_loading import import_string

from taskmill.exceptions import counts_as_lost

from .composition import check_batches, expected_status
from .flow import check_flow
from .producer import TASKS, Enqueued, SoakSchedule
from .watch import FlowWatch

ACTIVE = {"READY", "WAITING", "RUNNING"}
SUCCESS_KINDS = {"plain", "in_child", "unique", "async", "atomic", "flaky", "scheduled", "after"}


@dataclass
class Report:
    runs: int = 0
    lost: int = 0
    doubled: int = 0
    missing_fires: int = 0
    double_fires: int = 0
    stuck: int = 0
    wrong: int = 0
    limit_exceeded: int = 0
    slot_leaked: int = 0
    callback_missing: int = 0  # a finished batch's callback never enqueued (composition.py)
    callback_doubled: int = 0
    batches: int = 0  # batches checked
    orphan_batches: int = 0  # batches whose creation failed ambiguously: empty, unsealed
    # FAILED after TASKMILL_MAX_LOST_ATTEMPTS lost attempts (lost workers, or database
    # errors the worker counted as lost): allowed
    gave_up: int = 0
    crashed_runs: int = 0  # runs with at least one lost attempt
    # Flow control, to show the limits were met: bodies per limited task, the most of a
    # concurrency-limited key that ran at once (holding their slot), the watch's counts.
    flow_bodies: Counter = field(default_factory=Counter)
    flow_peaks: Counter = field(default_factory=Counter)
    flow_ledger: Counter = field(default_factory=Counter)  # rate starts the gate recorded
    flow_counted_at_claim: int = 0  # rated bodies a freeze or a restart kept waiting
    flow_exceeded: Counter = field(default_factory=Counter)  # limit_exceeded, by what
    watch: FlowWatch | None = None
    problems: list[str] = field(default_factory=list)

    def flag(self, counter: str, message: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        self.problems.append(f"{counter}: {message}")

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.doubled
            or self.missing_fires
            or self.double_fires
            or self.stuck
            or self.wrong
            or self.limit_exceeded
            or self.slot_leaked
            or self.callback_missing
            or self.callback_doubled
        )


@dataclass
class Executions:
    starts: Counter = field(default_factory=Counter)  # attempt -> times started
    ends: Counter = field(default_factory=Counter)


def read_logs(record_dir: Path) -> dict[int, Executions]:
    runs: dict[int, Executions] = defaultdict(Executions)
    for path in sorted(record_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("start", "end"):
                target = runs[int(parts[1])]
                (target.starts if parts[0] == "start" else target.ends)[int(parts[2])] += 1
    return runs


def kind_of(task_path: str) -> str:
    return task_path.removeprefix(f"{TASKS}.")


def check(
    record_dir: Path,
    enqueued: list[Enqueued],
    targeted: set[int],
    schedules: list[SoakSchedule],
    watch: FlowWatch | None = None,
    disrupted: Sequence[tuple[float, float, int | None]] = (),
) -> Report:
    """``watch``: the limits' slots as the soak saw them; ``disrupted``: the times a worker
    was frozen or the database restarting (flow.py)."""
    from taskmill.models import Run
    from tests.testapp.models import Effect

    report = Report()
    executions = read_logs(record_dir)
    rows = {
        row["id"]: row
        for row in Run.objects.values(
            "id", "task_path", "status", "attempt", "errors", "return_value", "args",
            "worker_id", "worker_ids", "lease_expires_at", "schedule_id", "scheduled_for",
            "held_by", "snoozes", "batch_id",
        )
    }  # fmt: skip
    report.runs = len(rows)
    by_token = {item.run_id: item for item in enqueued}
    for item in enqueued:
        if item.run_id not in rows:
            report.flag("lost", f"run {item.run_id} ({item.token}) was enqueued and is gone")
    effects = Counter(Effect.objects.values_list("name", flat=True))
    callbacks: dict[str, Counter] = defaultdict(Counter)
    for row in rows.values():
        if row["task_path"] in (f"{TASKS}.callback_ok", f"{TASKS}.callback_failed"):
            callbacks[row["args"][0]][kind_of(row["task_path"])] += 1

    for run_id, row in rows.items():
        _check_run(report, row, executions.get(run_id, Executions()), rows, by_token, targeted)
        if kind_of(row["task_path"]) == "atomic_row":
            _check_atomic(report, row, effects[f"soak-{run_id}"])
        if kind_of(row["task_path"]) == "with_callbacks" and row["status"] not in ACTIVE:
            _check_callbacks(report, row, callbacks[str(run_id)])
    _check_fires(report, rows, schedules)
    check_batches(report, rows)
    report.watch = watch
    check_flow(report, record_dir, rows, watch, disrupted)
    return report


def _check_run(report, row, runs: Executions, rows, by_token, targeted: set[int]) -> None:
    run_id, status, errors = row["id"], row["status"], row["errors"]
    label = f"run {run_id} {kind_of(row['task_path'])}"
    if status in ACTIVE:
        held = f", held back by {row['held_by']}" if row["held_by"] else ""
        report.flag("stuck", f"{label} is still {status}{held}")
        return
    if row["worker_id"] or row["lease_expires_at"] is not None:
        report.flag("stuck", f"{label} ended {status} but still names a worker or a lease")
    # An atomic attempt's body may run again inside its attempt (its transaction retried
    # after a deadlock or a dropped connection): its rows, checked apart, are what counts.
    atomic = kind_of(row["task_path"]) == "atomic_row"
    doubled = [attempt for attempt, times in runs.starts.items() if times > 1]
    if doubled and not atomic:
        report.flag("doubled", f"{label}: attempt(s) {doubled} started more than once")
    started = sum(runs.starts.values())
    # Each snooze ended an attempt with no error: an extra start too.
    if started > len(errors) + row["snoozes"] + 1 and not atomic:
        report.flag(
            "doubled",
            f"{label} started {started} times but its errors and {row['snoozes']} snooze(s) "
            f"account for {len(errors) + row['snoozes']} extra: "
            f"{[e['exception_class_path'] for e in errors]}",
        )
    if any(counts_as_lost(e) for e in errors):
        report.crashed_runs += 1
    # Tasks log Django's attempt number (context.attempt: one per worker that started the
    # run), not the fencing counter, which also counts claims given back unstarted.
    final_attempt = len(row["worker_ids"])
    if status == "SUCCESSFUL" and runs.ends[final_attempt] == 0:
        report.flag("wrong", f"{label} is SUCCESSFUL but its attempt {final_attempt} never ended")
    if status == "FAILED" and errors and _failed_by_the_database(errors[-1]):
        last = errors[-1]["traceback"].strip().splitlines()[-1][:200]
        report.flag("lost", f"{label} FAILED by a database error, not counted as lost: {last}")
        return
    expected = _expected_status(row, rows, by_token)
    if status == expected:
        return
    if status == "CANCELLED" and run_id in targeted:
        return
    if status == "FAILED" and errors and counts_as_lost(errors[-1]):
        report.gave_up += 1  # too many lost attempts: designed, and its errors say so
        return
    last = errors[-1]["traceback"].strip().splitlines()[-1][:200] if errors else "no error"
    report.flag("wrong", f"{label} ended {status}, expected {expected} (last error: {last})")


def _failed_by_the_database(error: dict[str, str]) -> bool:
    """An error entry of a database error (Django's, or a driver's: PEP 249 names its classes)
    that the worker did not count as lost. No soak task raises one on its own: it is the
    chaos's restart or cut session, which must send the run again, not fail it."""
    if counts_as_lost(error):
        return False
    try:
        exc_type = import_string(error["exception_class_path"])
    except ImportError:
        return False
    return isinstance(exc_type, type) and any(
        cls.__name__ in ("DatabaseError", "InterfaceError") for cls in exc_type.__mro__
    )


def _expected_status(row, rows, by_token) -> str:
    kind = kind_of(row["task_path"])
    item = by_token.get(row["id"])
    composed = expected_status(kind, row, rows, item.params if item is not None else {})
    if composed is not None:
        return composed
    if kind in ("fails", "overruns"):
        return "FAILED"
    if kind == "with_callbacks":
        return "SUCCESSFUL" if row["args"][1] else "FAILED"
    if kind == "after" and item is not None:
        dependency = rows.get(item.params["depends_on"])
        if dependency is None or dependency["status"] != "SUCCESSFUL":
            return "CANCELLED"
    return "SUCCESSFUL"


def _check_atomic(report: Report, row, rows_written: int) -> None:
    want = 1 if row["status"] == "SUCCESSFUL" else 0
    if rows_written > want:
        report.flag("doubled", f"atomic run {row['id']} ({row['status']}) left {rows_written} rows")
    elif rows_written < want:
        report.flag("lost", f"atomic run {row['id']} is SUCCESSFUL but its row is missing")


def _check_callbacks(report: Report, row, found: Counter) -> None:
    want = "callback_ok" if row["status"] == "SUCCESSFUL" else "callback_failed"
    other = "callback_failed" if want == "callback_ok" else "callback_ok"
    if found[want] == 0:
        report.flag("lost", f"run {row['id']} ended {row['status']}: no {want} enqueued")
    elif found[want] > 1:
        report.flag("doubled", f"run {row['id']}: {found[want]} {want} runs")
    if found[other]:
        report.flag("wrong", f"run {row['id']} ended {row['status']} and enqueued {other}")


def _check_fires(report: Report, rows, schedules: list[SoakSchedule]) -> None:
    from taskmill.models import Schedule

    ids = dict(Schedule.objects.filter(name__startswith="soak-").values_list("id", "name"))
    fired: dict[str, Counter] = defaultdict(Counter)
    for row in rows.values():
        if row["schedule_id"] in ids:
            fired[ids[row["schedule_id"]]][row["scheduled_for"]] += 1
    for schedule in schedules:
        expected = schedule.expected_fires()
        got = fired[schedule.name]
        missing = [at for at in expected if not got[at]]
        if missing:
            report.missing_fires += len(missing)
            report.problems.append(
                f"missing_fires: {schedule.name} never fired for {len(missing)} time(s), "
                f"first {missing[0].isoformat()}"
            )
        for at, times in got.items():
            extra = times - 1 if at in expected else times
            if extra:
                report.double_fires += extra
                report.problems.append(f"double_fires: {schedule.name} at {at} x{times}")


def check_leftovers(report: Report, record_dir: Path) -> None:
    """After every worker stopped: no session holds locks, no child process lives on."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        elif connection.vendor == "mysql":
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
        else:
            cursor.execute("SELECT 0")
        sessions = cursor.fetchone()[0]
    if sessions:
        report.flag("stuck", f"{sessions} database session(s) outlived every worker")
    marker = f"TASKMILL_TEST_RECORD_DIR={record_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "python" not in cmdline:
                    continue  # the private database server, restarted by this process
                report.flag("stuck", f"process {entry.name} outlived its worker: {cmdline[:120]}")
        except OSError:
            continue
