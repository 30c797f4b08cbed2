"""The engine contract: every operation taskmill asks of a database, and what it guarantees.

Nothing outside ``taskmill.db`` knows which database it talks to: it calls these methods on
``get_engine(alias)`` and reads these flags. An engine is supported when the contract suite
(``tests/db/``) passes on it.

Required (abstract here; ``base.BaseEngine`` implements most of them once for all):

- the queue: ``insert_runs``, ``claim``, ``finish``, ``release``, ``release_orphans``,
  ``stage_due``;
- leases: ``heartbeat``, ``unmark_prefetched``, ``lock_attempt``, ``expired_runs``,
  ``rescue``;
- rollups: ``add_stats``, ``cumulative_stats``;
- batches: ``add_to_batch``;
- reads for operators: ``task_paths`` (the runs of unknown tasks, ``taskmill.unknown_tasks``);
- SQL other modules write beside the engine's: ``adapt_datetime``, the index conditions.

Optional (a default here, overridden where the database can do better):

- ``notify`` does nothing and ``start_listener`` returns None, unless the engine
  ``pushes_wakeups``: workers poll instead;
- ``cancel_query`` does nothing: a stopped task's statement runs to its end;
- ``check_database`` finds nothing to say; ``answer_start_up_probes`` has nothing to answer;
- ``lock_skipping_locked`` locks rows with SKIP LOCKED only where ``skips_locked_rows``;
- ``json_array_holds`` searches a JSON array by containment.

Times are aware datetimes in UTC. "In the caller's transaction" means: inside the caller's
``transaction.atomic`` when there is one (the operation commits or rolls back with it), else
the operation is its own transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import Q

from ..status import RunStatus

if TYPE_CHECKING:
    from django.core.checks import CheckMessage
    from django.db.models import QuerySet

    from .records import ClaimedRun, HeartbeatReply, Landed, NewRun, Outcome
    from .stats import Ended


class Listener(ABC):
    """A running wake-up listener (``Engine.start_listener``)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop listening and end the listener's thread (waits a moment for it)."""


class Engine(ABC):
    """What taskmill needs of a database; one instance per connection alias, no state of
    its own but the alias (the connection is Django's, per thread)."""

    # -- capabilities ----------------------------------------------------------------------

    #: The engine wakes idle workers of other processes itself (``notify``, delivered to
    #: ``start_listener``'s callback). If not, workers poll, backing off while idle.
    pushes_wakeups: bool = False
    #: Rows are locked one by one and a pick can pass over rows another transaction holds
    #: (``SELECT ... FOR UPDATE SKIP LOCKED``): PostgreSQL, MySQL 8.0.1+, MariaDB 10.6+.
    #: False on SQLite, whose write transaction holds the whole database: there is nothing
    #: to skip, and a transaction kept open holds every writer back.
    skips_locked_rows: bool = False
    #: A search for a value under a key of a JSON column should ask for containment
    #: (``kwargs__contains``): PostgreSQL's ``@>``, which a GIN index serves when a project
    #: adds one. Elsewhere the key lookup, which every database speaks and no index serves.
    searches_json_by_containment: bool = False
    #: ``UPDATE ... RETURNING``: PostgreSQL and SQLite 3.35+. Not MySQL/MariaDB, where what
    #: an update wrote is read back in a second statement.
    updates_returning: bool = True

    # -- SQL spelled beside the engine's -------------------------------------------------

    #: How this database spells the run states that partial indexes cover: the exact terms
    #: of those indexes (``taskmill.models.indexes``), which queries must repeat for the
    #: planner (SQLite's above all) to use them.
    ready_condition: str = f"status = '{RunStatus.READY}'"
    due_condition: str = f"status = '{RunStatus.READY}' AND due = 1"
    deferred_condition: str = f"status = '{RunStatus.READY}' AND due = 0"
    running_condition: str = f"status = '{RunStatus.RUNNING}'"
    waiting_condition: str = f"status = '{RunStatus.WAITING}'"
    # Deferred runs waiting for a time; runs held back by a limit wait for a slot instead.
    staging_condition: str = f"status = '{RunStatus.READY}' AND due = 0 AND held_by IS NULL"
    held_condition: str = f"status = '{RunStatus.READY}' AND held_by IS NOT NULL"

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self) -> Any:
        """This thread's Django connection to the engine's database."""
        return connections[self.alias]

    @abstractmethod
    def adapt_datetime(self, value: datetime | None) -> Any:
        """``value`` as a raw cursor's parameter for a datetime column of this database."""

    # -- the queue ----------------------------------------------------------------------

    @abstractmethod
    def insert_runs(self, runs: Sequence[NewRun], wake_queues: set[str]) -> None:
        """Insert ``runs``, in order, and set each one's ``pk``; wake idle workers serving
        ``wake_queues`` once the insert commits (engines that push wake-ups).

        All or none: in the caller's transaction, or in one of its own when it takes more
        than one statement. Ids grow in the order of ``runs``."""

    @abstractmethod
    def claim(
        self,
        *,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_until: datetime,
        queues: Sequence[str] | None,
        exclude_queues: Sequence[str] = (),
        backends: Sequence[str] | None = None,
        freeing: Sequence[str] = (),
    ) -> list[ClaimedRun]:
        """Take up to ``limit`` runs that are READY and due (``available_at <= now``, staged)
        and mark them held by ``worker_id``; return them as they are after the claim.

        Best first: priority descending, then ``available_at``, then id; the list comes back
        in that order. Taking and marking are one atomic step: no two claims, however
        concurrent, ever return the same run with the same attempt. A claimed run is
        RUNNING, its ``attempt`` one more (the fencing token), ``worker_id`` appended to its
        ``worker_ids``, its lease until ``lease_until``, and its start stamped ``now``.

        Filters: ``queues`` (None: every queue), minus ``exclude_queues``, minus the paused
        queues (read in the claim itself, so a pause holds from its commit); ``backends``:
        only runs enqueued through these ``TASKS`` aliases (None: any). Runs in the caller's
        transaction if there is one (a claim riding with a batch's outcomes). Queues at
        their limit (``Queue.at_limit``) are passed over too, but those of ``freeing``: the
        caller's transaction frees a slot in them, and gates what it claims (taskmill.limits).

        A claim passes over rows other transactions lock, so it may come back short, even
        empty, while claimable runs wait: on MySQL and MariaDB a concurrent claim locks, for
        the time of its statement, rows its scan only looked at (another queue's). An empty
        claim does not prove an empty queue: ``any_claimable`` does."""

    @abstractmethod
    def any_claimable(
        self,
        *,
        now: datetime,
        queues: Sequence[str] | None,
        exclude_queues: Sequence[str] = (),
        backends: Sequence[str] | None = None,
    ) -> bool:
        """Whether a claim with these filters (as ``claim``'s) would find a run now, locks
        aside: a plain read that locks nothing and waits for no lock. A burst worker asks it
        before it exits on an empty claim."""

    @abstractmethod
    def finish(
        self, outcomes: Sequence[Outcome], *, worker_id: str | None = None
    ) -> dict[int, Landed]:
        """Write ``outcomes``; return the ones that landed, by run id.

        Fenced: an outcome lands only on a row still RUNNING with the outcome's attempt (and,
        ``worker_id`` given, still held by that worker: a run returned unstarted is claimed
        again under the same attempt number), so a worker presumed dead cannot overwrite
        what happened after its run was rescued or claimed again. A
        retry (READY) of a run whose stop was requested lands as CANCELLED. Landing clears
        the lease and the worker. ``Landed`` says the status written and whether the run has
        dependents. Runs in the caller's transaction (the callbacks, rollups and dependents
        are written in the same one), else in its own; every outcome or none."""

    @abstractmethod
    def release(self, runs: Sequence[ClaimedRun], *, now: datetime, started: bool) -> int:
        """Put held runs back in the queue, due at ``now`` (worker shutdown); return how many
        went back. Fenced like ``finish``: a run rescued meanwhile is not touched.

        A run that never started (``started=False``) goes back as if never claimed, its
        attempt given back; one that started keeps its attempt (it did happen)."""

    @abstractmethod
    def release_orphans(self, worker_id: str, held: Sequence[int], *, now: datetime) -> int:
        """Put back, as never claimed, the runs RUNNING under ``worker_id`` that it does not
        hold (``held``): a claim whose commit went through but whose reply was lost. Returns
        how many. Passes over rows other transactions lock."""

    @abstractmethod
    def stage_due(self, now: datetime) -> int:
        """Mark deferred READY runs whose ``available_at <= now`` as due, so that claims see
        them; return how many. Safe to run from several workers at once; cheap when none is
        due, however many wait for later."""

    def notify(self, queue_name: str) -> None:
        """Wake idle workers of other processes serving ``queue_name`` (at commit, when in a
        transaction). Optional: nothing, on engines that do not push wake-ups."""
        return None

    def start_listener(
        self, on_wakeup: Callable[[str], None], *, listen_database: str | None = None
    ) -> Listener | None:
        """Call ``on_wakeup(queue_name)`` from a background thread for each wake-up sent by
        ``notify`` or ``insert_runs`` (and with "" after each (re)connection: wake-ups may
        have been missed). Optional: None, on engines that do not push wake-ups.
        ``listen_database``: a ``DATABASES`` alias to listen through instead (a direct
        connection, when the runs' alias goes through a pooler)."""
        return None

    # -- leases ---------------------------------------------------------------------------

    @abstractmethod
    def heartbeat(
        self,
        *,
        worker_id: str,
        held: dict[int, int],
        waiting: set[int],
        skip: set[int],
        now: datetime,
        lease_until: datetime,
        worker_fields: dict[str, Any],
    ) -> HeartbeatReply:
        """Renew the leases of the runs ``worker_id`` holds (``held``: id -> attempt) to
        ``lease_until``; stamp the worker's row (``last_heartbeat_at = now`` and
        ``worker_fields``).

        In autocommit, one statement at a time: a frozen worker holds no lock that would keep
        others from rescuing its runs. ``skip`` (atomic tasks' rows, locked by their own
        transactions) are left alone; ``waiting`` (claimed, not started) are marked
        prefetched, the others unmarked. The reply: ``renewed``; ``lost`` (no longer RUNNING
        with our attempt under us: rescued, cancelled); ``stop_requested`` among those still
        ours; ``shutdown_requested`` for the worker."""

    @abstractmethod
    def unmark_prefetched(
        self,
        run_id: int,
        attempt: int,
        now: datetime,
        connection: Any = None,
        worker_id: str | None = None,
    ) -> bool:
        """A run marked prefetched starts now: unmark it and stamp its start, if it is still
        RUNNING with ``attempt`` (held by ``worker_id``, when given). False if not (rescued,
        or claimed again since, perhaps under the same attempt number): starting it would
        run it twice. ``connection``: the thread's own, when not the engine's."""

    @abstractmethod
    def lock_attempt(self, run_id: int, attempt: int, worker_id: str | None = None) -> bool:
        """Lock the run's row until the caller's transaction ends, if it is still RUNNING
        with ``attempt`` (held by ``worker_id``, when given); False (nothing locked) if not.
        An atomic task's body and outcome then commit only while the attempt is still the
        run's (call inside a transaction)."""

    @abstractmethod
    def expired_runs(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` RUNNING runs whose lease ended before ``now``, oldest lease first,
        locked for the caller's transaction; rows locked by others (atomic tasks) are passed
        over. Each a dict of ``id, attempt, task_path, queue_name, worker_id, prefetched,
        stop_requested, has_dependents, errors, worker_ids, options``, JSON decoded and made
        harmless if forged."""

    @abstractmethod
    def rescue(self, run_id: int, attempt: int, now: datetime, values: dict[str, Any]) -> bool:
        """Write ``values`` (column -> value) on a rescued run, only if it still holds
        ``attempt``, RUNNING, with its lease ended before ``now``: a stale read never reverts
        a finished run. True if written."""

    # -- rollups ----------------------------------------------------------------------------

    @abstractmethod
    def add_stats(self, ended: Iterable[Ended]) -> None:
        """Add these attempts to the per-minute and per-hour rollups, in the caller's
        transaction (the one writing their outcomes: each counted once). Upserts with
        increments, rows in key order: concurrent writers neither lose counts nor deadlock."""

    @abstractmethod
    def cumulative_stats(self) -> dict[tuple[str, str, str], dict[str, float]]:
        """Per (queue, task, status): every sum of the kept hours plus the pruned totals
        (``stats.SUM_COLUMNS``), read in one statement, so that a prune moving hours to the
        totals meanwhile is seen either before or after, never half (the metrics' counters)."""

    # -- batches (taskmill.batches) -----------------------------------------------------------

    @abstractmethod
    def add_to_batch(self, batch_id: int, counts: dict[str, int]) -> tuple[bool, int] | None:
        """Add ``counts`` (a counter column -> how many) to an unfinished batch, in the
        caller's transaction, its row locked until it ends; return (sealed, members still
        pending), or None when the batch had finished already, or is gone."""

    # -- reads for operators ------------------------------------------------------------------

    @abstractmethod
    def task_paths(self, after: str | None, limit: int) -> list[str]:
        """The distinct ``task_path`` values of the stored runs, those above ``after`` (all
        when None), in order, at most ``limit``. Read through an index that leads with the
        task path, one probe per value (a skip scan): the cost follows the number of paths,
        never the number of runs."""

    @abstractmethod
    def queue_names(self, task_paths: Sequence[str]) -> set[str]:
        """The distinct ``queue_name`` values of the stored runs of these task paths (from
        ``task_paths``): a skip scan of the (task_path, queue_name, id) index, one probe per
        (path, queue) pair, never a read of the runs themselves. For the control room's queue
        filter, which must name every queue without counting its backlog (issue 25)."""

    # -- flow control (taskmill.limits) -------------------------------------------------------

    @abstractmethod
    def lock_or_create(self, table: str, key: str, rows: Sequence[dict[str, Any]]) -> None:
        """Lock, until the caller's transaction ends, the rows of ``table`` whose ``key``
        column holds the values of ``rows`` (dicts of column -> value), inserting the
        missing ones as given: one statement, rows taken in ``rows``' order (the caller
        sorts them), so that concurrent callers never deadlock over them and two that
        both find a row missing do not both insert it."""

    # -- what the rest of taskmill asks instead of the vendor -------------------------------

    def lock_skipping_locked(self, queryset: QuerySet) -> QuerySet:
        """``queryset`` locking the rows it reads until the caller's transaction ends,
        passing over rows others hold, where the database can (``skips_locked_rows``); as
        it is elsewhere (SQLite: the write transaction holds the whole database)."""
        if self.skips_locked_rows:
            return queryset.select_for_update(skip_locked=True)
        return queryset

    def json_array_holds(self, field: str, values: Sequence[Any]) -> Q:
        """A filter: the JSON array in column ``field`` has an element equal to one of
        ``values`` (the control room's search by positional argument). Optional: JSON
        containment (``@>`` on PostgreSQL, ``JSON_CONTAINS`` on MySQL), overridden where the
        database has none."""
        found = Q()
        for value in values:
            found |= Q(**{f"{field}__contains": [value]})
        return found

    def cancel_query(self, connection: Any) -> None:
        """Cancel the statement that ``connection`` (another thread's Django connection to
        this database) is running, if any: a stop reaches a task blocked in a query.
        Optional: nothing, where another thread cannot cancel it."""
        return None

    def check_database(self, where: str) -> list[CheckMessage]:
        """System-check messages about this database's version and settings (connects).
        ``where`` begins each message. Optional: none."""
        return []

    @classmethod
    def answer_start_up_probes(cls, connection: Any) -> None:
        """Settle, outside any transaction, what Django would otherwise ask the database
        inside one at start-up, where a busy database makes it misread. Optional: nothing
        to settle."""
        return None
