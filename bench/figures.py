"""Each figure: how it is measured."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .environment import TASKMILL
from .systems import (
    System,
    WorkerProcess,
    analyze,
    enqueue_in_one_transaction,
    pre_enqueue,
    truncate,
    wait_until,
)

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
