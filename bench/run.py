"""taskmill vs django-tasks-db on one PostgreSQL: enqueue, bulk enqueue, drain, latency.

Run from the repository root:  python -m bench [--quick] [--runs N] [--latency-samples M]
See bench/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SETTINGS = "bench.settings"
# Where taskmill is imported from: the work tree, or a snapshot of a commit (--taskmill-rev).
TASKMILL_SRC = REPO
TASKMILL_DESC = ""

TASKMILL = "taskmill"
PEER = "django-tasks-db"


# -- set-up -----------------------------------------------------------------------------------


def check_requirements() -> None:
    missing = []
    for module, package in (
        ("django", "Django>=6.0"),
        ("psycopg", "psycopg[binary]"),
        ("django_tasks_db", "django-tasks-db"),
    ):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        sys.exit(
            f"bench: missing package(s): {', '.join(missing)}.\n"
            f"Install them with:  pip install -r {REPO / 'bench' / 'requirements.txt'}"
        )
    try:
        import django.tasks  # noqa: F401
    except ImportError:
        sys.exit("bench: needs Django 6.0+ (django.tasks); both systems are compared on it.")


def server_params() -> dict[str, Any]:
    return {
        "host": os.environ.get("TASKMILL_BENCH_PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("TASKMILL_BENCH_PGPORT", "5432")),
        "user": os.environ.get("TASKMILL_BENCH_PGUSER", "postgres"),
        "password": os.environ.get("TASKMILL_BENCH_PGPASSWORD", "") or None,
    }


def admin_sql(*statements: str) -> None:
    """Run statements on the server's maintenance database (CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **server_params()) as conn:
        for statement in statements:
            conn.execute(statement)


def create_database(name: str) -> None:
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    from django.db import connections

    connections.close_all()
    admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_taskmill_rev(rev: str | None) -> None:
    """Import taskmill from a snapshot of commit ``rev`` instead of the work tree.

    The work tree may be mid-edit while the benchmark runs; a snapshot is what was committed.
    """
    global TASKMILL_SRC, TASKMILL_DESC

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    if rev is None:
        try:
            head = git("rev-parse", "--short", "HEAD")
            dirty = git("status", "--porcelain", "--", "taskmill")
        except (OSError, subprocess.CalledProcessError):
            TASKMILL_DESC = "work tree (not a git checkout)"
            return
        extra = " + uncommitted changes in taskmill/" if dirty else ""
        TASKMILL_DESC = f"work tree at {head}{extra}"
        return
    sha = git("rev-parse", "--short", f"{rev}^{{commit}}")
    target = Path(tempfile.mkdtemp(prefix="taskmill-bench-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", sha, "taskmill"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    TASKMILL_SRC = target
    TASKMILL_DESC = f"commit {sha} ({rev}), snapshot in {target}"


def setup_django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    for path in (REPO, TASKMILL_SRC):  # TASKMILL_SRC ends up first
        if str(path) in sys.path:
            sys.path.remove(str(path))
        sys.path.insert(0, str(path))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def machine_facts(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import django
    from django.db import connection

    import taskmill

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        sync_commit = cursor.fetchone()[0]
    try:
        dtdb_version = version("django-tasks-db")
    except PackageNotFoundError:
        dtdb_version = "?"
    return {
        "cpu_cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "postgresql": pg_version,
        "synchronous_commit": sync_commit,
        "python": platform.python_version(),
        "django": django.get_version(),
        "taskmill": f"{taskmill.__version__}, {TASKMILL_DESC}",
        "django_tasks_db": dtdb_version,
        "runs_N": args.runs,
        "enqueue_runs": args.enqueue_runs,
        "latency_samples_M": args.latency_samples,
        "repeats": args.repeat,
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    """The 1/5/15-minute load: anything else running on the machine skews every figure."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# -- the two systems ----------------------------------------------------------------------------


@dataclass
class System:
    name: str
    noop: Any
    probe: Any
    model: Any
    table: str
    result_status_done: tuple[str, ...] = ("SUCCESSFUL", "FAILED")
    extra: dict[str, Any] = field(default_factory=dict)

    def done_count(self, ids: list[str] | None = None) -> int:
        rows = self.model.objects.filter(status__in=self.result_status_done)
        if ids is not None:
            rows = rows.filter(id__in=ids)
        return rows.count()

    def failed_count(self) -> int:
        return self.model.objects.filter(status="FAILED").count()


def systems() -> tuple[System, System]:
    from django_tasks_db.models import DBTaskResult

    from bench import tasks
    from taskmill.models import Run

    return (
        System(TASKMILL, tasks.noop, tasks.probe, Run, Run._meta.db_table),
        System(PEER, tasks.dt_noop, tasks.dt_probe, DBTaskResult, DBTaskResult._meta.db_table),
    )


def truncate(*systems_: System) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(s.table for s in systems_)} RESTART IDENTITY")


def analyze(system: System) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {system.table}")


def enqueue_in_one_transaction(system: System, n: int) -> None:
    from django.db import transaction

    with transaction.atomic():
        for _ in range(n):
            system.noop.enqueue()


def pre_enqueue(system: System, n: int) -> None:
    """Fill the queue quickly: taskmill's bulk API, or the peer's enqueue() in one transaction."""
    if system.name == TASKMILL:
        system.noop.enqueue_many([((), {})] * n)
    else:
        enqueue_in_one_transaction(system, n)


# -- subprocess workers --------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    paths = [str(TASKMILL_SRC), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, paths)))
    env.pop("DJANGO_AUTORELOAD_ENV", None)
    return env


def taskmill_worker_cmd(*, burst: bool, concurrency: int) -> list[str]:
    cmd = [sys.executable, "-m", "django", "taskmill", "worker", "--no-reload"]
    cmd += ["--concurrency", str(concurrency)]
    if burst:
        cmd.append("--burst")
    return cmd


def peer_worker_cmd(*, burst: bool, interval: float) -> list[str]:
    # --queue-name default ("default") is where the tasks go; --backend picks the rows whose
    # backend_name is "dtdb"; --no-startup-delay drops the random sleep of up to 1 s.
    cmd = [sys.executable, "-m", "django", "db_worker", "--backend", "dtdb", "--no-reload"]
    cmd += ["--no-startup-delay", "--interval", repr(interval), "--verbosity", "0"]
    if burst:
        cmd.append("--batch")
    return cmd


class WorkerProcess:
    def __init__(self, cmd: list[str], logdir: Path, label: str, wrap: list[str] | None = None):
        self.cmd = [*(wrap or []), *cmd]
        self.log_path = logdir / f"{label}-{time.time_ns()}.log"
        self._log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=REPO,
            env=worker_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self, timeout: float) -> float:
        """Wait for the process to exit; return its wall time (spawn to exit), seconds."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(
                f"worker did not finish in {timeout:.0f}s: {self.describe()}"
            ) from None
        elapsed = time.monotonic() - self.started
        self._log.close()
        if code != 0:
            raise RuntimeError(f"worker exited with {code}: {self.describe()}")
        return elapsed

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited early ({self.proc.returncode}): {self.describe()}")

    def describe(self) -> str:
        if not self._log.closed:
            self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        return f"{' '.join(self.cmd)}\n--- log tail ({self.log_path}) ---\n{tail}"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval=0.01) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- figures ---------------------------------------------------------------------------


def measure_rate(fn: Callable[[], None], n: int) -> float:
    began = time.perf_counter()
    fn()
    return n / (time.perf_counter() - began)


def fig_enqueue(system: System, n: int, repeat: int, warmup: int) -> list[float]:
    """N x .enqueue() of a no-op, each in its own (autocommit) transaction."""

    def one_by_one(count: int) -> Callable[[], None]:
        def go() -> None:
            for _ in range(count):
                system.noop.enqueue()

        return go

    truncate(system)
    one_by_one(warmup)()
    rates = []
    for _ in range(repeat):
        truncate(system)
        rates.append(measure_rate(one_by_one(n), n))
    truncate(system)
    return rates


def fig_bulk(system: System, n: int, repeat: int, warmup: int) -> list[float] | None:
    """taskmill: one enqueue_many() of N calls. The peer has no bulk API: None."""
    if system.name != TASKMILL:
        return None
    calls = [((), {})] * n
    truncate(system)
    system.noop.enqueue_many(calls[:warmup])
    rates = []
    for _ in range(repeat):
        truncate(system)
        rates.append(measure_rate(lambda: system.noop.enqueue_many(calls), n))
    truncate(system)
    return rates


def fig_enqueue_in_transaction(system: System, n: int, repeat: int, warmup: int) -> list[float]:
    """N x .enqueue() inside one transaction.atomic(): the best the public API offers the peer."""
    truncate(system)
    enqueue_in_one_transaction(system, warmup)
    rates = []
    for _ in range(repeat):
        truncate(system)
        rates.append(measure_rate(lambda: enqueue_in_one_transaction(system, n), n))
    truncate(system)
    return rates


@dataclass
class DrainResult:
    db_rate: float  # N / (last finished_at - first started_at), both stamped by the worker
    wall_rate: float  # N / (process exit seen by the bench - first started_at)
    wall: float  # process wall time, spawn to exit (start-up included)
    span: float  # seconds behind db_rate
    wall_span: float  # seconds behind wall_rate


def drain_once(
    system: System,
    cmd: list[str],
    n: int,
    logdir: Path,
    wrap: list[str] | None = None,
) -> DrainResult:
    from django.db.models import Max, Min

    truncate(system)
    pre_enqueue(system, n)
    analyze(system)
    worker = WorkerProcess(cmd, logdir, f"drain-{system.name}", wrap=wrap)
    wall = worker.wait(timeout=120 + n / 20)
    exited_at = time.time()  # same clock as the worker's timezone.now() stamps
    done = system.done_count()
    failed = system.failed_count()
    if done != n or failed:
        raise RuntimeError(
            f"{system.name}: drain left {n - done} of {n} runs unfinished, {failed} failed"
        )
    span = system.model.objects.aggregate(a=Min("started_at"), b=Max("finished_at"))
    span_s = (span["b"] - span["a"]).total_seconds()
    wall_span = exited_at - span["a"].timestamp()
    truncate(system)
    return DrainResult(
        db_rate=n / span_s, wall_rate=n / wall_span, wall=wall, span=span_s, wall_span=wall_span
    )


def startup_time(system: System, cmd: list[str], repeat: int, logdir: Path) -> float:
    """Wall time of the burst worker on an empty queue: interpreter, Django, connect, exit."""
    truncate(system)
    times = [WorkerProcess(cmd, logdir, f"empty-{system.name}").wait(60) for _ in range(repeat)]
    return statistics.median(times)


def fig_drain(
    system: System, cmd: list[str], n: int, repeat: int, warmup: int, logdir: Path
) -> tuple[list[DrainResult], float]:
    startup = startup_time(system, cmd, max(repeat, 3), logdir)
    drain_once(system, cmd, warmup, logdir)  # warm-up: caches, the table, the plan
    results = [drain_once(system, cmd, n, logdir) for _ in range(repeat)]
    return results, startup


@dataclass
class LatencyResult:
    # enqueue-to-start, milliseconds, per sample
    task_start: list[float]  # probe's time.time() at its first line - time.time() before enqueue()
    after_call: list[float]  # probe's time.time() at its first line - time.time() after enqueue()
    stored: list[float]  # row's started_at - row's enqueued_at
    enqueue_call: list[float]  # how long the .enqueue() call itself took


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    # nearest-rank percentile: the smallest value with at least q% of samples at or below it
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def probe_round(system: System, m: int, gap_ms: tuple[float, float], worker: WorkerProcess):
    """Enqueue m probes one at a time with a random gap; return their ids and enqueue times."""
    samples = []
    for _ in range(m):
        before = time.time()
        result = system.probe.enqueue()
        after = time.time()
        samples.append((result.id, before, after))
        time.sleep(random.uniform(*gap_ms) / 1000)
    ids = [s[0] for s in samples]
    timeout = 30 + m * 0.05

    def all_done() -> bool:
        worker.check_alive()
        return system.done_count(ids) == len(ids)

    wait_until(all_done, timeout, f"{system.name} to finish {m} probes")
    return samples


def fig_latency(
    system: System,
    cmd: list[str],
    m: int,
    repeat: int,
    gap_ms: tuple[float, float],
    logdir: Path,
) -> list[LatencyResult]:
    truncate(system)
    worker = WorkerProcess(cmd, logdir, f"latency-{system.name}")
    try:
        # Ready: the worker has run a probe end to end (not a sleep).
        first = system.probe.enqueue()

        def first_done() -> bool:
            worker.check_alive()
            return system.done_count([first.id]) == 1

        wait_until(first_done, 60, f"the {system.name} worker to run its first task")
        probe_round(system, 20, gap_ms, worker)  # warm-up
        results = []
        for _ in range(repeat):
            truncate(system)
            samples = probe_round(system, m, gap_ms, worker)
            rows = {
                str(row.pk): row
                for row in system.model.objects.filter(id__in=[s[0] for s in samples])
            }
            task_start, after_call, stored, call = [], [], [], []
            for result_id, before, after in samples:
                row = rows[str(result_id)]
                if row.status != "SUCCESSFUL":
                    raise RuntimeError(f"{system.name}: probe {result_id} is {row.status}")
                task_start.append((float(row.return_value) - before) * 1000)
                after_call.append((float(row.return_value) - after) * 1000)
                stored.append((row.started_at - row.enqueued_at).total_seconds() * 1000)
                call.append((after - before) * 1000)
            results.append(LatencyResult(task_start, after_call, stored, call))
    finally:
        worker.stop()
    truncate(system)
    return results


# -- report ----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def print_table(rows: list[tuple[str, str, str, str]], header: tuple[str, str, str, str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)

    def fmt(r):
        return "  ".join(
            r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i]) for i in range(4)
        )

    print(fmt(header))
    print(line)
    for r in rows:
        if r[1] == r[2] == r[3] == "":
            print(r[0])
        else:
            print(fmt(r))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="taskmill vs django-tasks-db on one PostgreSQL (see bench/README.md).",
    )
    p.add_argument("--runs", type=int, help="N: runs per bulk/drain measurement (default 3000)")
    p.add_argument(
        "--enqueue-runs",
        type=int,
        help="one-by-one .enqueue() calls per measurement, figures 1 and 2's peer line "
        "(default 1000)",
    )
    p.add_argument(
        "--latency-samples", type=int, help="M: probes per latency measurement (default 200)"
    )
    p.add_argument(
        "--repeat", type=int, help="measurements per figure; the median is reported (default 3)"
    )
    p.add_argument("--quick", action="store_true", help="N=1000, M=60, 2 repeats: a smoke run")
    p.add_argument(
        "--taskmill-concurrency",
        type=int,
        default=8,
        help="a second taskmill drain line with this --concurrency (0: skip; default 8)",
    )
    p.add_argument(
        "--peer-intervals",
        default="0,0.1",
        help="db_worker --interval values for the latency figure, comma-separated; the first is "
        "the one the ratio uses (default 0,0.1: busy polling, and a 100 ms poll)",
    )
    p.add_argument(
        "--gap-ms", default="20,40", help="random gap between latency probes (default 20,40)"
    )
    p.add_argument(
        "--only",
        choices=["enqueue", "bulk", "drain", "latency"],
        action="append",
        help="run only these figures (repeatable)",
    )
    p.add_argument(
        "--database",
        default=os.environ.get("TASKMILL_BENCH_DB", "taskmill_bench"),
        help="benchmark database name, created and dropped by the run (default taskmill_bench)",
    )
    p.add_argument(
        "--keep-database", action="store_true", help="do not drop the database at the end"
    )
    p.add_argument(
        "--taskmill-rev",
        metavar="REV",
        help="benchmark taskmill as committed at this git revision (e.g. HEAD), from a "
        "snapshot, instead of the work tree",
    )
    p.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    args = p.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (1000 if quick else 3000)
    args.enqueue_runs = args.enqueue_runs or (300 if quick else 1000)
    args.latency_samples = args.latency_samples or (60 if quick else 200)
    args.repeat = args.repeat or (2 if quick else 3)
    if min(args.repeat, args.runs, args.enqueue_runs, args.latency_samples) < 1:
        p.error("--runs, --enqueue-runs, --latency-samples and --repeat must be at least 1")
    args.peer_intervals = [float(x) for x in args.peer_intervals.split(",") if x.strip()]
    lo, hi = (float(x) for x in args.gap_ms.split(","))
    args.gap = (lo, hi)
    args.warmup = max(50, min(500, args.runs // 10))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_requirements()
    os.environ["TASKMILL_BENCH_DB"] = args.database  # the settings (and the workers) read it
    only = set(args.only or ["enqueue", "bulk", "drain", "latency"])
    t_start = time.monotonic()
    use_taskmill_rev(args.taskmill_rev)
    create_database(args.database)
    try:
        setup_django()
        facts = machine_facts(args)
        tm, peer = systems()
        raw: dict[str, Any] = {"facts": facts}
        rows: list[tuple[str, str, str, str]] = []
        n, r, warm = args.runs, args.repeat, args.warmup
        logdir = Path(tempfile.mkdtemp(prefix="taskmill-bench-"))

        def progress(msg: str) -> None:
            print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

        if "enqueue" in only:
            progress("enqueue one by one")
            ne, we = args.enqueue_runs, max(50, args.enqueue_runs // 10)
            a = fig_enqueue(tm, ne, r, we)
            b = fig_enqueue(peer, ne, r, we)
            raw["enqueue"] = {TASKMILL: a, PEER: b}
            rows.append(
                (
                    "1. enqueue, one by one (runs/s)",
                    fmt_rate(median(a)),
                    fmt_rate(median(b)),
                    ratio(median(a), median(b)),
                )
            )
        if "bulk" in only:
            progress("bulk enqueue")
            a = fig_bulk(tm, n, r, warm)
            ne, we = args.enqueue_runs, max(50, args.enqueue_runs // 10)
            ta = fig_enqueue_in_transaction(tm, ne, r, we)
            tb = fig_enqueue_in_transaction(peer, ne, r, we)
            raw["bulk"] = {TASKMILL: a, PEER: None}
            raw["enqueue_in_one_transaction"] = {TASKMILL: ta, PEER: tb}
            rows.append(("2. bulk enqueue (runs/s)", fmt_rate(median(a)), "n/a", "n/a"))
            rows.append(("   peer's best equivalent: N x enqueue() in one", "", "", ""))
            rows.append(
                (
                    "   transaction.atomic() (runs/s)",
                    fmt_rate(median(ta)),
                    fmt_rate(median(tb)),
                    ratio(median(ta), median(tb)),
                )
            )
            rows.append(
                (
                    "   taskmill bulk vs that peer equivalent",
                    fmt_rate(median(a)),
                    fmt_rate(median(tb)),
                    ratio(median(a), median(tb)),
                )
            )
        if "drain" in only:
            peer_cmd = peer_worker_cmd(burst=True, interval=0.0)
            progress(f"drain: {PEER}")
            pb, ps = fig_drain(peer, peer_cmd, n, r, warm, logdir)
            lines = [1] + ([args.taskmill_concurrency] if args.taskmill_concurrency > 1 else [])
            raw["drain"] = {PEER: {"startup_s": ps, "runs": [d.__dict__ for d in pb]}}
            for c in lines:
                progress(f"drain: taskmill --concurrency {c}")
                ta, ts = fig_drain(
                    tm, taskmill_worker_cmd(burst=True, concurrency=c), n, r, warm, logdir
                )
                raw["drain"][f"{TASKMILL} c={c}"] = {
                    "startup_s": ts,
                    "runs": [d.__dict__ for d in ta],
                }
                a_db, b_db = median([d.db_rate for d in ta]), median([d.db_rate for d in pb])
                a_w, b_w = median([d.wall_rate for d in ta]), median([d.wall_rate for d in pb])
                rows.append((f"3. drain, 1 process, taskmill --concurrency {c}", "", "", ""))
                rows.append(
                    (
                        "   from DB timestamps (runs/s)",
                        fmt_rate(a_db),
                        fmt_rate(b_db),
                        ratio(a_db, b_db),
                    )
                )
                rows.append(
                    (
                        "   from first start to process exit (runs/s)",
                        fmt_rate(a_w),
                        fmt_rate(b_w),
                        ratio(a_w, b_w),
                    )
                )
                if c == 1:
                    rows.append(
                        (
                            "   worker start-up+exit, empty queue (s)",
                            f"{ts:.2f}",
                            f"{ps:.2f}",
                            ratio(ts, ps),
                        )
                    )
        if "latency" in only:
            progress("latency: taskmill")
            la = fig_latency(
                tm,
                taskmill_worker_cmd(burst=False, concurrency=1),
                args.latency_samples,
                r,
                args.gap,
                logdir,
            )
            raw["latency"] = {TASKMILL: [x.__dict__ for x in la]}
            peer_lat = {}
            for interval in args.peer_intervals:
                progress(f"latency: {PEER} --interval {interval:g}")
                lb = fig_latency(
                    peer,
                    peer_worker_cmd(burst=False, interval=interval),
                    args.latency_samples,
                    r,
                    args.gap,
                    logdir,
                )
                peer_lat[interval] = lb
                raw["latency"][f"{PEER} interval={interval:g}"] = [x.__dict__ for x in lb]

            def pct(results: list[LatencyResult], attr: str, q: float) -> float:
                return median([percentile(getattr(x, attr), q) for x in results])

            first_interval = args.peer_intervals[0]
            measures = (
                ("task_start", "4. enqueue-to-start (ms): task body start - before .enqueue()"),
                ("after_call", "   task body start - .enqueue() returned (ms)"),
                ("stored", "   stored started_at - enqueued_at (ms)"),
            )
            for attr, title in measures:
                for interval, lb in peer_lat.items():
                    if attr != "task_start" and interval != first_interval:
                        continue
                    rows.append((f"{title}, peer --interval {interval:g}", "", "", ""))
                    for q in (50, 95, 99):
                        a, b = pct(la, attr, q), pct(lb, attr, q)
                        rows.append((f"   p{q}", fmt_ms(a), fmt_ms(b), ratio(a, b)))
            a, b = pct(la, "enqueue_call", 50), pct(peer_lat[first_interval], "enqueue_call", 50)
            rows.append(
                (
                    "   .enqueue() call itself while a worker idles, p50 (ms)",
                    fmt_ms(a),
                    fmt_ms(b),
                    ratio(a, b),
                )
            )

        facts["loadavg_end"] = loadavg()
        print()
        print("taskmill vs django-tasks-db: one worker process each, same PostgreSQL, no-op tasks")
        for key, value in facts.items():
            print(f"  {key}: {value}")
        print(
            f"  figures: median of {r} measurements each, after a warm-up; ratio = taskmill / peer"
        )
        print()
        print_table(rows, ("figure", TASKMILL, PEER, "ratio"))
        print()
        print(f"total bench time {time.monotonic() - t_start:.0f}s; worker logs in {logdir}")
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1, default=str))
            print(f"raw measurements written to {args.json}")
    finally:
        if not args.keep_database:
            drop_database(args.database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
