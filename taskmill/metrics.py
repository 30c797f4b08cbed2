"""Prometheus metrics, in its text format, from the same figures as the dashboard.

A project adds the view to its URLs::

    path("metrics/taskmill", taskmill.metrics.view)

and may set TASKMILL_METRICS_TOKEN, which a scraper then sends as ``Authorization: Bearer
<token>``. No process of taskmill lives long enough to hold a counter (workers come and go,
several per machine), so the counters are read from the database, which every web process
reaches: the attempts ever ended, by queue, task and outcome, and the histograms of their
durations and start latencies, summed from the hourly rollups still kept plus the totals of
those pruned (``RunStatsTotal``, added to in the transaction that prunes an hour). They only
grow, so Prometheus's ``rate()`` and ``histogram_quantile()`` work over any range; they start
again from 0 only if the rollup tables are emptied, which Prometheus reads as a reset. Beside
them, gauges: queue depth (counted up to TASKMILL_COUNT_CAP) and oldest ready age, limits,
workers and slots, now.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse

from . import overview
from .conf import setting
from .db import get_engine
from .limits.rates import parse_rate
from .limits.report import queue_reports
from .models.stats import BUCKET_BOUNDS_MS, DURATION_COLUMNS, LATENCY_COLUMNS
from .rollups import OUTCOMES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def view(request: HttpRequest) -> HttpResponse:
    token = setting("TASKMILL_METRICS_TOKEN")
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), str(token).encode()):
            return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    database = request.GET.get("db") or "default"
    return HttpResponse("".join(render(database)), content_type=CONTENT_TYPE)


def render(database: str = "default") -> Iterable[str]:
    yield from _queues(database)
    yield from _workers(database)
    yield from _attempts(database)


def _queues(database: str) -> Iterable[str]:
    queues = overview.queue_overview(database)
    yield "# HELP taskmill_queue_runs Active runs per queue and state (held: by a limit).\n"
    yield "# TYPE taskmill_queue_runs gauge\n"
    for queue in queues:
        for state in ("ready", "scheduled", "waiting", "running", "held"):
            yield _line("taskmill_queue_runs", getattr(queue, state), queue=queue.name, state=state)
    # Each state is counted up to TASKMILL_COUNT_CAP runs across queues (taskmill.overview):
    # past it, its gauges above are floors, and this says so.
    capped = queues[0].capped if queues else ()
    name = "taskmill_queue_runs_capped"
    yield f"# HELP {name} 1 if the state had more runs than TASKMILL_COUNT_CAP (counts floored).\n"
    yield f"# TYPE {name} gauge\n"
    for state in overview.STATES:
        yield _line(name, int(state in capped), state=state)
    yield "# HELP taskmill_queue_oldest_ready_seconds Age of the oldest run ready now.\n"
    yield "# TYPE taskmill_queue_oldest_ready_seconds gauge\n"
    for queue in queues:
        yield _line(
            "taskmill_queue_oldest_ready_seconds", queue.oldest_ready_age or 0, queue=queue.name
        )
    yield "# HELP taskmill_queue_paused 1 if the queue is paused.\n"
    yield "# TYPE taskmill_queue_paused gauge\n"
    for queue in queues:
        yield _line("taskmill_queue_paused", int(queue.paused), queue=queue.name)
    yield from _queue_limits(database, queues)


def _queue_limits(database: str, queues: list[overview.QueueOverview]) -> Iterable[str]:
    """The limited queues' limits and what they use: the slots (RUNNING runs) of a
    concurrency limit, the starts in the window of a rate limit."""
    reports = [report for report in queue_reports(database, queues).values() if report.limited]
    concurrent = [report for report in reports if report.concurrency_limit is not None]
    rated = [report for report in reports if report.rate_limit is not None]
    for name, text, rows, value in (
        ("taskmill_queue_concurrency_limit", "Runs of the queue that may run at once.",
         concurrent, lambda report: report.concurrency_limit),
        ("taskmill_queue_concurrency_in_use", "Its slots in use (running runs).",
         concurrent, lambda report: report.in_use),
        ("taskmill_queue_rate_limit_starts", "Starts the queue's rate allows per window.",
         rated, lambda report: parse_rate(report.rate_limit).count),
        ("taskmill_queue_rate_limit_window_seconds", "The rate's window.",
         rated, lambda report: parse_rate(report.rate_limit).seconds),
        ("taskmill_queue_rate_starts_in_window", "Starts the rate counts now.",
         rated, lambda report: report.started_in_window or 0),
        ("taskmill_queue_at_limit", "1 while claims pass the queue over for want of a slot.",
         reports, lambda report: int(report.at_limit)),
    ):  # fmt: skip
        yield f"# HELP {name} {text}\n# TYPE {name} gauge\n"
        for report in rows:
            yield _line(name, value(report), queue=report.name)


def _workers(database: str) -> Iterable[str]:
    alive = [worker for worker in overview.worker_overview(database) if worker.alive]
    late = overview.late_schedules(database)
    orphaned = overview.orphaned_runs(database, limit=1000)
    for name, value, text in (
        ("taskmill_workers_alive", len(alive), "Workers whose heartbeat is within the lease."),
        ("taskmill_worker_slots", sum(w.concurrency for w in alive), "Their concurrency."),
        ("taskmill_worker_busy", sum(w.running for w in alive), "Runs they hold now."),
        ("taskmill_schedules_late", len(late), "Enabled schedules past their fire time."),
        ("taskmill_runs_orphaned", len(orphaned), "Running runs whose lease ran out."),
    ):
        yield f"# HELP {name} {text}\n# TYPE {name} gauge\n"
        yield _line(name, value)


# Each rollup status as the counters' ``outcome`` label (rollups.OUTCOMES: a retry was
# written READY, a snooze SNOOZED).
OUTCOME_LABELS = OUTCOMES


def _attempts(database: str) -> Iterable[str]:
    rows = cumulative_rollups(database)
    name = "taskmill_attempts_total"
    yield f"# HELP {name} Attempts ended, by outcome (retried: failed, to run again).\n"
    yield f"# TYPE {name} counter\n"
    for (queue, task, status), sums in sorted(rows.items()):
        outcome = OUTCOME_LABELS.get(status, status.lower())
        yield _line(name, sums["count"], queue=queue, task=task, outcome=outcome)
    histograms: dict[tuple[str, str], dict[str, float]] = {}
    for (queue, task, _status), sums in rows.items():
        merged = histograms.setdefault((queue, task), dict.fromkeys(sums, 0.0))
        for column, value in sums.items():
            merged[column] += value
    for metric, columns, total, text in (
        ("taskmill_attempt_duration_seconds", DURATION_COLUMNS, "duration_sum",
         "How long attempts ran."),
        ("taskmill_attempt_start_latency_seconds", LATENCY_COLUMNS, "latency_sum",
         "From ready to started."),
    ):  # fmt: skip
        yield f"# HELP {metric} {text}\n# TYPE {metric} histogram\n"
        for (queue, task), sums in sorted(histograms.items()):
            seen = 0.0
            for bound, column in zip(BUCKET_BOUNDS_MS, columns, strict=True):
                seen += sums[column]
                le = "+Inf" if bound == float("inf") else f"{bound / 1000:g}"
                yield _line(f"{metric}_bucket", seen, queue=queue, task=task, le=le)
            yield _line(f"{metric}_sum", sums[total], queue=queue, task=task)
            yield _line(f"{metric}_count", sums["count"], queue=queue, task=task)


def cumulative_rollups(database: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """Per (queue, task, status): every sum of the kept hours plus the pruned totals, read
    in one statement (``Engine.cumulative_stats``)."""
    return get_engine(database).cumulative_stats()


def _line(name: str, value: float, **labels: str) -> str:
    if not labels:
        return f"{name} {value:g}\n"
    text = ",".join(f'{key}="{_escaped(str(label))}"' for key, label in labels.items())
    return f"{name}{{{text}}} {value:g}\n"


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
