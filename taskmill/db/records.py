"""The records that cross the engine boundary: runs to insert, runs claimed, outcomes to
write, what a heartbeat learned; and the JSON and datetime conversions raw cursors need."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from .. import result_ttl
from ..models import Queue, Run
from ..status import RunStatus

RUN_TABLE = Run._meta.db_table
QUEUE_TABLE = Queue._meta.db_table

# Columns a claim hands back, in this order, on every engine. Not started_at and
# last_attempted_at: the claim writes its own time there, which the caller knows already.
CLAIMED_COLUMNS = (
    "id",
    "task_path",
    "backend",
    "queue_name",
    "priority",
    "args",
    "kwargs",
    "attempt",
    "enqueued_at",
    "run_after",
    "available_at",
    "worker_ids",
    "errors",
    "options",
    "has_dependents",
    "concurrency_key",
    "rate_key",
    "fair_key",
    "snoozes",
    "metadata",
)
# ClaimedRun's datetimes (raw cursors, and JSON, hand them back as text).
CLAIMED_DATETIME_COLUMNS = (
    "enqueued_at",
    "run_after",
    "available_at",
    "started_at",
    "last_attempted_at",
)


@dataclass(slots=True)
class NewRun:
    """A run about to be inserted: what the enqueue decides, and no model instance.

    Building Django model instances was most of a bulk enqueue's time; engines insert
    these directly (PostgreSQL) or turn them into ``Run`` rows (the ORM path).
    """

    task_path: str
    backend: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_at: datetime
    run_after: datetime | None
    available_at: datetime
    due: bool = True  # False when available_at is later than now (see Run.due)
    status: str = RunStatus.READY  # WAITING when it depends on runs not yet successful
    unique_key: str | None = None
    options: dict[str, Any] | None = None  # per-call options (Task.stored_options)
    extra: dict[str, Any] = field(default_factory=dict)  # further columns (the scheduler's)
    pk: int | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.extra[name]
        except KeyError:
            raise AttributeError(name) from None

    def column_values(self) -> dict[str, Any]:
        """Model attribute name -> value, for every column this run sets."""
        values = {name: getattr(self, name) for name in NEW_RUN_COLUMNS}
        values.update(self.extra)
        return values

    def as_model(self) -> Run:
        return Run(**self.column_values())


# NewRun's own fields are Run columns of the same names; ``extra`` and ``pk`` are not.
NEW_RUN_COLUMNS = tuple(f.name for f in fields(NewRun) if f.name not in {"extra", "pk"})
NEW_RUN_COLUMN_SET = frozenset(NEW_RUN_COLUMNS)


@dataclass(slots=True)
class ClaimedRun:
    """A run this worker holds: the row as it is after the claim."""

    id: int
    task_path: str
    backend: str
    queue_name: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    enqueued_at: datetime
    run_after: datetime | None
    available_at: datetime
    worker_ids: list[str]
    errors: list[dict[str, str]]
    options: dict[str, Any] | None = None
    has_dependents: bool = False
    # The keys its limits count under (taskmill.limits): the claim's gate reads them.
    concurrency_key: str | None = None
    rate_key: str | None = None
    fair_key: str | None = None
    # The attempts that ended in ``raise taskmill.Snooze(...)`` so far: the next one past the
    # task's max_snoozes fails the run (worker/snoozing.py).
    snoozes: int = 0
    # What the caller passed and earlier attempts saved (taskmill.worker.metadata): the
    # attempt's context.metadata starts from it.
    metadata: dict[str, Any] | None = None
    # The claim's time, standing in for the attempt's start until its body begins (then
    # Attempt.mark_started sets both); the columns hold the same.
    started_at: datetime | None = None
    last_attempted_at: datetime | None = None
    # What is wrong with the row, if anything: a row taskmill never wrote (arguments that
    # are not a list, invalid JSON...). Such a run is failed by Attempt.prepare, unrun.
    problem: str | None = None
    # When the worker queued it for a thread (time.monotonic(); worker/executor.py).
    queued_at: float = 0.0
    # The gate recorded a rate's start for this claim, not begun yet: the body's start
    # writes it begun (taskmill.limits.starts). No other run writes anything there.
    counts_start: bool = False

    def __post_init__(self) -> None:
        # Checked here, where every claimed row passes, so that no later step (choosing a
        # thread, retries, expiry, the child process) meets a value of the wrong shape: a
        # forged row fails on its own instead of killing a task thread or the worker loop.
        if self.problem is None:
            self.problem = _shape_problem(self)
        if self.problem is not None:
            _make_harmless(self)

    @property
    def pk(self) -> int:
        return self.id

    @property
    def holder(self) -> str | None:
        """The worker that claimed this attempt (the claim appends it to ``worker_ids``):
        with the attempt, what fences its writes (Engine.finish)."""
        return self.worker_ids[-1] if self.worker_ids else None

    def sort_key(self) -> tuple[int, datetime, int]:
        return (-self.priority, self.available_at, self.id)


@dataclass(slots=True, frozen=True)
class ClaimRequest:
    """What a claim asks for, with the queue restriction already as SQL (``AND ...``)."""

    worker_id: str
    limit: int
    now: datetime
    lease_until: datetime
    queue_sql: str
    queue_params: list[str]


@dataclass(slots=True)
class Outcome:
    """How one attempt ended, as the worker will write it.

    ``status`` is SUCCESSFUL, FAILED or CANCELLED (final), or READY: a retry, due again at
    ``available_at``. A retry of a run whose stop was requested meanwhile is written as
    CANCELLED instead (the statement checks the row's flag).
    """

    run_id: int
    attempt: int  # the fencing token
    status: str
    finished_at: datetime  # when the attempt ended
    return_value: Any = None
    errors: list[dict[str, str]] = field(default_factory=list)  # the run's full error list
    available_at: datetime | None = None  # retries: when the next attempt may start
    expires_at: datetime | None = None  # final outcomes: when the run may be pruned
    # When the attempt's body began: written as the run's started_at and last_attempted_at,
    # in place of the claim's stand-in (a claimed run may wait in the worker's backlog).
    # None: it never began (stopped or refused first); the run then keeps its earlier
    # attempt's start, or none for a first attempt.
    started_at: datetime | None = None
    # The run's snooze count after this attempt, when it snoozed (``raise taskmill.Snooze``);
    # None leaves the count as it is.
    snoozes: int | None = None
    # The run's metadata as the attempt left it, when the attempt changed it (its context's
    # ``metadata``, progress included); None: the row keeps what it holds, which is what
    # the attempt saved last, if anything (taskmill.worker.metadata).
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # An error's text comes from the task's exception: it may hold what a database
        # refuses (PostgreSQL: NUL; PostgreSQL and MariaDB: lone surrogates). Shown escaped
        # instead, or writing the outcome would fail, and be retried, for ever.
        if any(not _storable_text(text) for error in self.errors for text in error.values()):
            self.errors = [
                {key: _escaped_text(text) for key, text in error.items()} for error in self.errors
            ]

    @property
    def due(self) -> bool | None:
        if self.available_at is None:
            return None
        return self.available_at <= self.finished_at


@dataclass(slots=True, frozen=True)
class Landed:
    """An outcome the database accepted, with the status it was written as."""

    run_id: int
    # The attempt whose outcome it is: a worker's batch may hold a stale attempt's outcome
    # next to the newer attempt of the same run, and only one of them landed.
    attempt: int
    status: str
    has_dependents: bool
    # The batch the run is a member of (taskmill.batches): a final outcome counts there.
    batch_id: int | None = None


@dataclass(slots=True)
class HeartbeatReply:
    """What one heartbeat learned."""

    renewed: set[int]
    lost: set[int]  # no longer ours: drop their outcomes, stop their attempts
    stop_requested: set[int]
    shutdown_requested: bool


@dataclass(slots=True, frozen=True)
class BrokenJson:
    """What a JSON column held that is not JSON (SQLite and MariaDB store JSON as text, and
    a writer that switched off their CHECK constraint can put anything there)."""

    text: str
    error: str


# The commonest JSON texts in a claimed row (no arguments, no errors), decoded without the
# parser: a fresh object each time, since the caller may change it.
_EMPTY_JSON = {"[]": list, "{}": dict}


def load_json(value: Any) -> Any:
    # Raw cursors return JSON columns as text on SQLite and MySQL, decoded on PostgreSQL.
    if not isinstance(value, str | bytes):
        return value
    empty = _EMPTY_JSON.get(value)
    if empty is not None:
        return empty()
    try:
        return json.loads(value)
    except ValueError as exc:  # invalid JSON, or bytes that are not UTF-8
        return BrokenJson(repr(value[:80]), str(exc))


def dump_json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def load_datetime(value: Any) -> datetime | None:
    # Raw cursors return datetimes as text on SQLite, naive UTC on MySQL.
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _storable_text(text: Any) -> bool:
    if not isinstance(text, str):
        return True
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped_text(text: Any) -> Any:
    if _storable_text(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


# -- the shape of a claimed row ---------------------------------------------------------------

ERROR_KEYS = frozenset({"exception_class_path", "traceback"})
# An entry may also say how its attempt counts (taskmill.exceptions.COUNTED_AS).
OPTIONAL_ERROR_KEYS = frozenset({"counted_as"})
# Per-call options a run may store (taskmill.tasks.STORED_OPTIONS), each with its check.
OPTION_CHECKS = {
    "max_attempts": lambda v: _is_int(v) and v >= 1,
    "timeout": lambda v: v is None or (_is_number(v) and v > 0),
    # One duration, or one per outcome (taskmill.result_ttl).
    "result_ttl": result_ttl.stored_is_valid,
    "retry_on_database_errors": lambda v: isinstance(v, bool),
    "max_snoozes": lambda v: _is_int(v) and v >= 0,
    "on_dependency_failure": lambda v: v in ("cancel", "run"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _wrong(column: str, expected: str, value: Any) -> str:
    if isinstance(value, BrokenJson):
        return f"its {column!r} column is not valid JSON ({value.error}): {value.text}"
    return f"its {column!r} column must hold {expected}, not {_short(value)}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"


def _shape_problem(run: ClaimedRun) -> str | None:
    """What is wrong with a claimed row's JSON columns, for a human; None if nothing."""
    if not isinstance(run.args, list):
        return _wrong("args", "a JSON list", run.args)
    if not isinstance(run.kwargs, dict):
        return _wrong("kwargs", "a JSON object", run.kwargs)
    if not _valid_worker_ids(run.worker_ids):
        return _wrong("worker_ids", "a JSON list of strings", run.worker_ids)
    if not _valid_errors(run.errors):
        return _wrong("errors", "a JSON list of error entries", run.errors)
    if not _valid_options(run.options):
        return _wrong("options", "null or an object of valid per-call options", run.options)
    if not (_is_int(run.snoozes) and run.snoozes >= 0):
        return _wrong("snoozes", "a count (an integer >= 0)", run.snoozes)
    if run.metadata is not None and not isinstance(run.metadata, dict):
        return _wrong("metadata", "null or a JSON object", run.metadata)
    return None


def _valid_options(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict)
        and value.keys() <= OPTION_CHECKS.keys()
        and all(OPTION_CHECKS[name](option) for name, option in value.items())
    )


def _valid_worker_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(worker, str) for worker in value)


def _valid_errors(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(error, dict)
        and ERROR_KEYS <= error.keys() <= ERROR_KEYS | OPTIONAL_ERROR_KEYS
        and all(isinstance(text, str) for text in error.values())
        for error in value
    )


def make_state_harmless(row: dict[str, Any]) -> None:
    """A row the rescue read: replace the state taskmill keeps (errors, worker ids, per-call
    options) by empty values where it is not what taskmill writes, so the rescue cannot trip
    on one forged row (and with it, leave its whole batch RUNNING). Arguments are not read
    here: the next claim judges them."""
    if not _valid_errors(row["errors"]):
        row["errors"] = []
    if not _valid_worker_ids(row["worker_ids"]):
        row["worker_ids"] = []
    if not _valid_options(row["options"]):
        row["options"] = None


def _make_harmless(run: ClaimedRun) -> None:
    """Replace what is broken by empty values: nothing downstream may trip on it."""
    run.args, run.kwargs, run.options, run.metadata = [], {}, None, None
    if not (_is_int(run.snoozes) and run.snoozes >= 0):
        run.snoozes = 0
    if not _valid_worker_ids(run.worker_ids):
        run.worker_ids = []
    if not _valid_errors(run.errors):
        run.errors = []
