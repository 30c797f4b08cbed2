"""What an operator asks of a running taskmill: read-only, shared by ``manage.py taskmill
status`` / ``health`` and the admin.

Every query reads active rows only, through the indexes the worker's hot path already
keeps (taskmill.models.indexes): the runs table may hold millions of finished runs, and a
status page must cost the same whether it does or not. The run queries spell each partial
index's condition exactly as the engine does, since SQLite uses a partial index only when a
query repeats its terms.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.utils import timezone

from .compat import task_backends
from .conf import setting
from .db import get_engine
from .db.records import RUN_TABLE, load_datetime
from .models import Batch, Queue, Schedule, Worker

# The run states an overview counts per queue, in the order they are shown.
STATES = ("ready", "scheduled", "waiting", "running", "held")


@dataclass(frozen=True)
class QueueOverview:
    name: str
    ready: int  # READY and available now: what workers should be taking
    scheduled: int  # READY, deferred to later (run_after, a retry's backoff)
    waiting: int  # WAITING for the runs they depend on
    running: int
    # READY, held back by a limit until a slot frees (taskmill.limits); not in ``scheduled``.
    held: int
    paused: bool
    paused_at: datetime | None
    # Seconds since the oldest run counted in ``ready`` became available; None if none.
    oldest_ready_age: float | None
    # The states (of STATES) whose counting stopped at ``count_cap`` runs (across queues):
    # their figures here are floors, what was read before the cap. A backlog past the cap
    # is an outage, and counting it whole would slow every page that shows it (issue 25).
    capped: tuple[str, ...] = ()
    count_cap: int = 0

    def shown(self, state: str) -> str:
        """A figure as the control room and ``taskmill status`` print it: "1,234", or
        "1,234+" when its state's counting stopped at the cap."""
        value = f"{getattr(self, state):,}"
        return f"{value}+" if state in self.capped else value


@dataclass(frozen=True)
class WorkerOverview:
    id: str
    host: str
    pid: int
    label: str
    queues: list[str] | None  # None: every queue
    concurrency: int
    state: str
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: float
    # A heartbeat younger than TASKMILL_LEASE: the worker's leases are being renewed.
    alive: bool
    running: int  # RUNNING runs held by it now, claimed and not started included


@dataclass(frozen=True)
class LateSchedule:
    name: str
    task_path: str
    next_fire_at: datetime
    lateness: float  # seconds past next_fire_at
    # Why a scheduler may be holding it back on purpose: dependencies not met, or a retry
    # after an error (its last_error).
    waiting_until: datetime | None
    last_error: str


@dataclass(frozen=True)
class OrphanedRun:
    id: int
    task_path: str
    queue_name: str
    worker_id: str
    attempt: int
    lease_expires_at: datetime
    expired_for: float  # seconds since the lease ran out


# -- runs -----------------------------------------------------------------------------------


# Each active state's runs are read in the order of the index that holds them (the engine's
# condition spells its terms), at most the cap plus one: the cost of a count follows the cap,
# never the backlog. (condition attribute, the index's order, the states it counts)
_COUNTED = (
    ("due_condition", "priority DESC, available_at, id", ("ready", "scheduled")),
    ("staging_condition", "available_at", ("ready", "scheduled")),
    ("waiting_condition", "id", ("waiting",)),
    ("running_condition", "worker_id", ("running",)),
    ("held_condition", "held_by, priority DESC, available_at, id", ("held",)),
)


def count_cap() -> int:
    """How many runs of one state the overview counts before it stops (TASKMILL_COUNT_CAP)."""
    return int(setting("TASKMILL_COUNT_CAP"))


def _run_counts(
    database: str, now: datetime, cap: int
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Per queue: ready, scheduled, waiting, running and held counts and the oldest ready
    time; and the states whose counting stopped at ``cap`` (their figures are floors)."""
    engine = get_engine(database)
    when = engine.adapt_datetime(now)
    counts: dict[str, dict[str, Any]] = {}
    capped: set[str] = set()

    def queue(name: str) -> dict[str, Any]:
        return counts.setdefault(
            name,
            {"ready": 0, "scheduled": 0, "waiting": 0, "running": 0, "held": 0, "oldest": None},
        )

    with connections[database].cursor() as cursor:
        for attribute, order, states in _COUNTED:
            # The first cap + 1 runs in the index's order, then grouped: a GROUP BY over the
            # whole state would read every row of a million-run backlog (issue 25). READY
            # runs sit in two indexes, due ones (the claim's, read in the claim's order, so
            # the oldest of a queue comes first) and deferred ones (the stager's, by time);
            # each may hold runs on either side of now: a due run retried with a backoff, a
            # deferred one whose time came before a worker staged it (no worker up).
            first = (
                f"SELECT queue_name, available_at FROM {RUN_TABLE} "
                f"WHERE {getattr(engine, attribute)} ORDER BY {order} LIMIT {cap + 1}"
            )
            cursor.execute(
                "SELECT queue_name, "
                "SUM(CASE WHEN available_at <= %s THEN 1 ELSE 0 END), COUNT(*), "
                "MIN(CASE WHEN available_at <= %s THEN available_at END) "
                f"FROM ({first}) AS picked GROUP BY queue_name",
                [when, when],
            )
            rows = cursor.fetchall()
            if sum(int(total) for _name, _ready, total, _oldest in rows) > cap:
                capped.update(states)
            for name, ready, total, oldest in rows:
                entry = queue(name)
                if states != ("ready", "scheduled"):
                    entry[states[0]] = int(total)
                    continue
                ready = int(ready or 0)
                entry["ready"] += ready
                entry["scheduled"] += int(total) - ready
                oldest = load_datetime(oldest)
                if oldest is not None and (entry["oldest"] is None or oldest < entry["oldest"]):
                    entry["oldest"] = oldest
    return counts, capped


def queue_overview(database: str = "default") -> list[QueueOverview]:
    """One entry per queue, by name: every queue the backends storing runs in ``database``
    name in their ``QUEUES`` (an idle one with zeros), and any other with active runs or a
    ``Queue`` row (paused). Each state is counted up to ``count_cap()``: past it, the
    figures of that state are floors, named in each entry's ``capped``."""
    now = timezone.now()
    cap = count_cap()
    counts, capped = _run_counts(database, now, cap)
    switches = {row.name: row for row in Queue.objects.using(database)}
    overview = []
    for name in sorted(counts.keys() | switches.keys() | configured_queues(database)):
        entry = counts.get(name, {})
        switch = switches.get(name)
        oldest = entry.get("oldest")
        overview.append(
            QueueOverview(
                name=name,
                ready=entry.get("ready", 0),
                scheduled=entry.get("scheduled", 0),
                waiting=entry.get("waiting", 0),
                running=entry.get("running", 0),
                held=entry.get("held", 0),
                paused=bool(switch and switch.paused),
                paused_at=switch.paused_at if switch else None,
                oldest_ready_age=_age(now, oldest) if oldest else None,
                capped=tuple(state for state in STATES if state in capped),
                count_cap=cap,
            )
        )
    return overview


def queue_names(database: str = "default") -> set[str]:
    """Every queue a run names or the project set up, without counting a run: the queues of
    ``QUEUES``, the ``Queue`` rows, and the distinct queues of the stored runs read by a skip
    scan of the (task_path, queue_name) index, one probe per pair (``Engine.queue_names``)."""
    from .unknown_tasks import stored_task_paths  # it imports the registry

    engine = get_engine(database)
    names = configured_queues(database)
    names.update(Queue.objects.using(database).values_list("name", flat=True))
    paths, _complete = stored_task_paths(database)
    names.update(engine.queue_names(paths))
    return names


def configured_queues(database: str = "default") -> set[str]:
    """The queue names in ``QUEUES`` of every taskmill backend whose runs live in
    ``database``: what the operator set up, listed even before a run uses it."""
    from .backend import stores_runs_in  # the backend imports much of taskmill

    names: set[str] = set()
    for backend in task_backends.all():
        if stores_runs_in(backend, database):
            names.update(backend.queues)
    return names


def orphaned_runs(database: str = "default", limit: int = 100) -> list[OrphanedRun]:
    """RUNNING runs whose lease ran out and that no rescue has taken yet, longest first."""
    engine = get_engine(database)
    now = timezone.now()
    with connections[database].cursor() as cursor:
        cursor.execute(
            "SELECT id, task_path, queue_name, worker_id, attempt, lease_expires_at "
            f"FROM {RUN_TABLE} WHERE {engine.running_condition} AND lease_expires_at < %s "
            # Not ORDER BY id alone: SQLite would walk the whole table in id order to skip
            # a sort, instead of the running index and a sort of its few rows.
            "ORDER BY lease_expires_at, id LIMIT %s",
            [engine.adapt_datetime(now), limit],
        )
        rows = cursor.fetchall()
    orphans = []
    for run_id, task_path, queue_name, worker_id, attempt, expired_at in rows:
        expired_at = load_datetime(expired_at)
        orphans.append(
            OrphanedRun(
                id=int(run_id),
                task_path=task_path,
                queue_name=queue_name,
                worker_id=worker_id,
                attempt=int(attempt),
                lease_expires_at=expired_at,
                expired_for=_age(now, expired_at),
            )
        )
    return orphans


# -- workers and schedules ------------------------------------------------------------------


def worker_overview(database: str = "default") -> list[WorkerOverview]:
    """Workers not stopped (a crashed one stays until the pruner drops its row), newest first."""
    now = timezone.now()
    lease = float(setting("TASKMILL_LEASE"))
    engine = get_engine(database)
    with connections[database].cursor() as cursor:
        # The running index is keyed by worker: one short range per worker.
        cursor.execute(
            f"SELECT worker_id, COUNT(*) FROM {RUN_TABLE} WHERE {engine.running_condition} "
            "GROUP BY worker_id"
        )
        load = {worker_id: int(total) for worker_id, total in cursor.fetchall()}
    rows = Worker.objects.using(database).exclude(state=Worker.State.STOPPED)
    overview = []
    for row in rows.order_by("-started_at", "id"):
        age = _age(now, row.last_heartbeat_at)
        overview.append(
            WorkerOverview(
                id=row.id,
                host=row.host,
                pid=row.pid,
                label=row.label,
                queues=row.queues,
                concurrency=row.concurrency,
                state=row.state,
                started_at=row.started_at,
                last_heartbeat_at=row.last_heartbeat_at,
                heartbeat_age=age,
                alive=age < lease,
                running=load.get(row.id, 0),
            )
        )
    return overview


def late_schedules(database: str = "default", grace: float = 60.0) -> list[LateSchedule]:
    """Enabled schedules whose next fire time is more than ``grace`` seconds past."""
    now = timezone.now()
    rows = (
        Schedule.objects.using(database)
        .filter(enabled=True, next_fire_at__lt=now - timedelta(seconds=grace))
        .order_by("next_fire_at", "name")
    )
    return [
        LateSchedule(
            name=row.name,
            task_path=row.task_path,
            next_fire_at=row.next_fire_at,
            lateness=_age(now, row.next_fire_at),
            waiting_until=row.blocked_until,
            last_error=row.last_error,
        )
        for row in rows
    ]


def open_batches(database: str = "default") -> int:
    """How many batches have not finished (their members still running, or their block still
    enqueueing): the batch table's index on finished_at, never the runs."""
    return Batch.objects.using(database).filter(finished_at__isnull=True).count()


# -- helpers --------------------------------------------------------------------------------


def _age(now: datetime, then: datetime) -> float:
    return round(max(0.0, (now - then).total_seconds()), 3)


def as_json(value: Any) -> Any:
    """A dataclass (or a list of them) as JSON-ready values, times in ISO 8601."""
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: as_json(getattr(value, field.name)) for field in fields(value)}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


__all__ = [
    "LateSchedule",
    "OrphanedRun",
    "QueueOverview",
    "WorkerOverview",
    "as_json",
    "count_cap",
    "late_schedules",
    "open_batches",
    "orphaned_runs",
    "queue_names",
    "queue_overview",
    "worker_overview",
]
