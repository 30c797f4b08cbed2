"""The adapter runtime: runs INSIDE a peer's virtualenv, measures, prints one JSON line.

Standard library only (each peer's venv has its own packages and nothing of the bench's).
An adapter module defines a subclass of :class:`Adapter` and calls :func:`main`; the
orchestrator (bench/orchestrate.py) runs ``<venv>/bin/python <adapter>.py '<request JSON>'``
and reads the last stdout line, ``{"ok": true, "result": ...}`` or ``{"ok": false, ...}``.

Every measurement is the same code for every system: the adapter only says how to
enqueue, how to count finished jobs and how to start the system's own worker.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POLL_S = 0.02  # how often a drain counts finished jobs (a COUNT / LLEN per poll)


def record_probe(k: int) -> None:
    """A latency probe's body: append "k time" to the probe file, first thing it does."""
    now = time.time()
    with open(os.environ["BENCH_PROBE_FILE"], "a") as f:
        f.write(f"{k} {now}\n")


def burn_cpu(ms: float = 10.0) -> None:
    """``ms`` of pure-Python CPU time of this thread (not wall time: load does not shorten it)."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def pg_dsn() -> str:
    return os.environ["BENCH_DSN"]


class Adapter:
    """What a peer must say; the measurements below are shared by every peer."""

    name = "?"
    bulk_supported = True
    # c -> None when the worker cannot run at that concurrency in one process
    max_concurrency: int | None = None

    def setup(self) -> None:
        """Create the schema in the (fresh, empty) database."""

    def reset(self) -> None:
        """Empty every queue table between measurements."""
        raise NotImplementedError

    def enqueue_one(self) -> None:
        raise NotImplementedError

    def enqueue_bulk(self, n: int) -> None:
        raise NotImplementedError

    def fill(self, n: int, kind: str = "noop") -> None:
        """Put n jobs in the queue, as fast as the system allows (not measured)."""
        self.enqueue_bulk(n)

    def enqueue_probe(self, k: int) -> None:
        raise NotImplementedError

    def done_count(self) -> int:
        """How many jobs have finished (successfully) since the last reset."""
        raise NotImplementedError

    def worker_cmd(self, concurrency: int, variant: str) -> list[str]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        return env

    def close(self) -> None:
        """Release connections before the database is dropped."""


# -- the worker process and its memory ---------------------------------------------------------


def tree_rss_kb(session: int) -> int:
    """Resident memory of every process in the worker's session (it and its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) != session:  # field 6 of stat: session id
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


class Worker:
    def __init__(self, cmd: list[str], env: dict[str, str], label: str):
        self.log = Path(tempfile.mkstemp(prefix=f"bench-{label}-", suffix=".log")[1])
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.peak_kb = 0
        self._last_sample = 0.0
        if pids := os.environ.get("BENCH_PIDS_FILE"):  # so the orchestrator can clean up
            with open(pids, "a") as f:
                f.write(f"{self.proc.pid}\n")

    def sample(self, force: bool = False) -> int:
        now = time.monotonic()
        if force or now - self._last_sample > 0.2:
            self._last_sample = now
            kb = tree_rss_kb(self.proc.pid)
            self.peak_kb = max(self.peak_kb, kb)
            return kb
        return 0

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.tail()}")

    def tail(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        """SIGTERM the whole session, SIGKILL what is left after 10 s."""
        pgid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                if tree_rss_kb(pgid) == 0:
                    break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        self.log.unlink(missing_ok=True)


def wait_until(pred: Callable[[], bool], timeout: float, what: str, worker: Worker) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        worker.check()
        worker.sample()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_S)


# -- measurements -----------------------------------------------------------------------------


def timed(fn: Callable[[], None]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def m_enqueue(a: Adapter, n: int, repeat: int) -> list[float]:
    a.reset()
    for _ in range(max(20, n // 10)):
        a.enqueue_one()
    rates = []
    for _ in range(repeat):
        a.reset()

        def go() -> None:
            for _ in range(n):
                a.enqueue_one()

        rates.append(n / timed(go))
    a.reset()
    return rates


def m_bulk(a: Adapter, n: int, repeat: int) -> list[float] | None:
    if not a.bulk_supported:
        return None
    a.reset()
    a.enqueue_bulk(max(10, n // 10))
    rates = []
    for _ in range(repeat):
        a.reset()
        rates.append(n / timed(lambda: a.enqueue_bulk(n)))
    a.reset()
    return rates


def drain_once(
    a: Adapter,
    n: int,
    c: int,
    variant: str,
    kind: str,
    budget: float,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> dict:
    """Fill n jobs, start the worker(s), count finished jobs until all are done (or budget).

    ``workers``: worker processes started side by side (the limits' figures); ``env``: more
    environment for them."""
    a.reset()
    a.fill(n, kind)
    procs = []
    try:
        for _ in range(workers):
            cmd = a.worker_cmd(c, variant)  # first: an adapter may set its env from it
            procs.append(Worker(cmd, a.worker_env() | (env or {}), f"{a.name}-drain"))
        started = time.monotonic()
        first_t, first_done = None, 0
        done = 0
        while True:
            for worker in procs:
                worker.check()
                worker.sample()
            done = a.done_count()
            now = time.monotonic()
            if first_t is None and done > 0:
                first_t, first_done = now, done
            if done >= n:
                break
            if now - started > 90 and first_t is None:
                raise RuntimeError(f"no job finished in 90s: {procs[0].tail()}")
            if first_t is not None and now - first_t > budget:
                break  # slow system: rate over the budget, the rest is not waited for
            time.sleep(POLL_S)
        end = time.monotonic()
        for worker in procs:
            worker.sample(force=True)
        span = end - first_t if first_t else float("nan")
        rate = (done - first_done) / span if span and span > 0 else float("nan")
        return {
            "rate": rate,
            "done": done,
            "n": n,
            "span_s": span,
            "peak_rss_mb": sum(worker.peak_kb for worker in procs) / 1024,
            "complete": done >= n,
        }
    finally:
        for worker in procs:
            worker.stop()


def m_drain(a: Adapter, p: dict) -> dict:
    out: dict[str, Any] = {}
    kind, workers, env = p.get("kind", "noop"), p.get("workers", 1), p.get("env")
    for c in p["concurrency"]:
        if a.max_concurrency is not None and c > a.max_concurrency:
            out[str(c)] = {"na": f"one job at a time per worker process (no c={c})"}
            continue
        runs = []
        # warm-up (caches, the table, the plan; a slow system is cut at 3 s)
        drain_once(a, max(50, p["n"] // 10), c, p["variant"], kind, 3.0, workers, env)
        for _ in range(p["repeat"]):
            runs.append(drain_once(a, p["n"], c, p["variant"], kind, p["budget"], workers, env))
        out[str(c)] = {"runs": runs}
    a.reset()
    return out


def m_latency(a: Adapter, p: dict) -> dict:
    """An idle worker; probes enqueued one at a time with a random gap; body start - enqueue."""
    probe_file = Path(os.environ["BENCH_PROBE_FILE"])
    probe_file.write_text("")
    a.reset()
    worker = Worker(a.worker_cmd(1, p["variant"]), a.worker_env(), f"{a.name}-latency")

    def seen() -> dict[int, float]:
        out = {}
        for line in probe_file.read_text().splitlines():
            k, t = line.split()
            out[int(k)] = float(t)
        return out

    try:
        a.enqueue_probe(-1)  # ready: the worker has run a probe end to end
        wait_until(lambda: -1 in seen(), 90, "the worker's first probe", worker)
        gap_lo, gap_hi = p["gap_ms"]
        rounds = []
        k = 0
        for r in range(p["repeat"] + 1):  # round 0 is a warm-up
            before: dict[int, float] = {}
            count = 20 if r == 0 else p["m"]
            for _ in range(count):
                k += 1
                before[k] = time.time()
                a.enqueue_probe(k)
                worker.sample()
                time.sleep(random.uniform(gap_lo, gap_hi) / 1000)
            keys = set(before)
            wait_until(lambda keys=keys: keys <= set(seen()), 60 + count, "the probes", worker)
            if r:
                starts = seen()
                rounds.append([(starts[i] - before[i]) * 1000 for i in sorted(keys)])
        worker.sample(force=True)
        return {"rounds": rounds, "idle_rss_mb": worker.peak_kb / 1024}
    finally:
        worker.stop()
        a.reset()


def m_rss_drift(a: Adapter, p: dict) -> dict:
    """One long-lived worker: RSS after the first `small` tasks and after `big` tasks."""
    a.reset()
    worker = Worker(a.worker_cmd(1, p["variant"]), a.worker_env(), f"{a.name}-rss")
    out: dict[str, float] = {}
    try:
        total = 0
        for target in (p["small"], p["big"]):
            while total < target:
                chunk = min(10_000, target - total)
                a.fill(chunk)
                total += chunk
                wait_until(lambda t=total: a.done_count() >= t, 120 + chunk / 50, "drain", worker)
            time.sleep(0.5)  # let the worker settle (finish its batch bookkeeping)
            out[str(target)] = worker.sample(force=True) / 1024
        return out
    finally:
        worker.stop()
        a.reset()


MEASURES: dict[str, Callable[[Adapter, dict], Any]] = {
    "setup": lambda a, p: a.setup(),
    "enqueue": lambda a, p: m_enqueue(a, p["n"], p["repeat"]),
    "bulk": lambda a, p: m_bulk(a, p["n"], p["repeat"]),
    "drain": m_drain,
    "latency": m_latency,
    "rss": m_rss_drift,
}


def main(adapter: Adapter) -> None:
    request = json.loads(sys.argv[1])
    out = sys.stdout
    sys.stdout = sys.stderr  # only the result line goes to the orchestrator's pipe
    fd, probe = tempfile.mkstemp(prefix="bench-probe-")
    os.close(fd)
    os.environ["BENCH_PROBE_FILE"] = probe
    try:
        result = MEASURES[request["measure"]](adapter, request.get("params", {}))
        line = {"ok": True, "result": result}
    except Exception as exc:  # reported in the table, the run goes on
        traceback.print_exc()
        line = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}
    finally:
        try:
            adapter.close()
        except Exception:
            traceback.print_exc()
        os.unlink(probe)
    out.write(json.dumps(line) + "\n")
    out.flush()
