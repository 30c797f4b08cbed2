"""Runs whose task no worker knows: finding them, counting them, pointing them at a task.

A run names its task by path, and a worker runs only paths that code registered, as a task's
or as an alias (``taskmill.registry``). A run enqueued by code since removed, or renamed
without an alias, cannot run: a worker that claims it fails it ("not registered"), and it
stays READY meanwhile. The control room and ``taskmill status`` show such runs with a count;
the admin's "Point at another task..." action (``taskmill.admin.repoint``) re-points them with
``repoint``.

"Known" is judged by this process, once it has imported every installed app's ``tasks``
module as a worker does when it starts (``registry.autodiscover``), and the module of a path
on demand as a worker's ``registry.resolve`` would. Workers running other code (a deploy
half done) may know more or less.

What it costs, with millions of runs stored: the distinct task paths of the runs are read
with a skip scan of the (task_path, queue_name, id) index, one probe per path
(``Engine.task_paths``), never a scan of the runs; the runs under unknown paths are counted
through the same index, no further than ``COUNT_CAP``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import IntegrityError, connections, transaction

from . import registry
from .db import get_engine
from .db.records import RUN_TABLE
from .exceptions import TaskNotRegistered
from .models import Run, RunStatus

# The runs of unknown tasks are counted no further than this (the runs list's cap too).
COUNT_CAP = 1000
# At most this many unknown paths are counted one by one (a table of forged rows may name
# any number of them); the rest are counted with them in the total.
PATHS_SHOWN = 50
# Paths read per statement (a recursive query goes this deep at most), then the scan goes on
# from the last path read.
PATHS_PER_STATEMENT = 500
# Distinct paths read at most: a table of forged rows is not walked to its end.
MAX_PATHS = 10_000
# Runs in these states may be pointed at another task: not RUNNING (a worker holds it, with
# the task it resolved), and a finished SUCCESSFUL run has nothing left to run.
REPOINTABLE = (RunStatus.READY, RunStatus.WAITING, RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass(frozen=True)
class UnknownTasks:
    """The runs stored under task paths that no task here registers, as path or alias."""

    runs: int  # counted up to COUNT_CAP
    more: bool  # more runs than ``runs`` (the count stopped at the cap)
    # Unknown path -> its runs among those counted, the first PATHS_SHOWN paths by name.
    paths: dict[str, int] = field(default_factory=dict)
    # Every distinct path was read (False: the table holds more than MAX_PATHS of them).
    complete: bool = True

    def __bool__(self) -> bool:
        return self.runs > 0


def stored_task_paths(database: str = "default", limit: int = MAX_PATHS) -> tuple[list[str], bool]:
    """The distinct task paths of the stored runs, in order, at most ``limit``; and whether
    that is all of them."""
    engine = get_engine(database)
    found: list[str] = []
    while len(found) < limit:
        page = engine.task_paths(found[-1] if found else None, PATHS_PER_STATEMENT)
        found += page
        if len(page) < PATHS_PER_STATEMENT:
            return found[:limit], len(found) <= limit
    return found[:limit], False


def is_known(task_path: str) -> bool:
    """Whether a worker running this code would run ``task_path`` (see the module's text)."""
    return registry.resolve_or_none(task_path) is not None


def unknown_paths(paths: Iterable[str]) -> list[str]:
    return [path for path in dict.fromkeys(paths) if not is_known(path)]


def unknown_task_paths(database: str = "default") -> list[str]:
    """The task paths of stored runs that no task here registers, by name."""
    registry.autodiscover()  # this process may not have imported the project's tasks yet
    paths, _complete = stored_task_paths(database)
    return unknown_paths(paths)


def unknown_tasks(database: str = "default") -> UnknownTasks:
    """How many runs are stored under unknown task paths (up to ``COUNT_CAP``), and which."""
    registry.autodiscover()
    paths, complete = stored_task_paths(database)
    unknown = unknown_paths(paths)
    if not unknown:
        return UnknownTasks(0, False, {}, complete)
    marks = ", ".join(["%s"] * len(unknown))
    with connections[database].cursor() as cursor:
        # The task_path index finds them; the LIMIT bounds the count however many there are.
        cursor.execute(
            f"SELECT task_path, COUNT(*) FROM (SELECT task_path FROM {RUN_TABLE} "
            f"WHERE task_path IN ({marks}) LIMIT {COUNT_CAP + 1}) AS picked GROUP BY task_path",
            unknown,
        )
        counted = {path: int(count) for path, count in cursor.fetchall()}
    total = sum(counted.values())
    shown = {path: counted[path] for path in sorted(counted)[:PATHS_SHOWN]}
    return UnknownTasks(min(total, COUNT_CAP), total > COUNT_CAP, shown, complete)


# -- pointing runs at another task ------------------------------------------------------------


@dataclass
class Repointed:
    """What ``repoint`` did: the runs it changed, by the path each had before, and what it
    left (runs that had moved on, or whose unique key the task already holds)."""

    by_old_path: dict[str, list[int]] = field(default_factory=dict)
    left: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(len(ids) for ids in self.by_old_path.values())


def check_target(task_path: str) -> None:
    """Raise ``TaskNotRegistered`` unless ``task_path`` is a registered task's own path."""
    registry.autodiscover()
    if task_path not in registry.registered_tasks():
        raise TaskNotRegistered(
            f"Runs can be pointed only at a registered task's own path, not {task_path!r}."
        )


def repoint(run_ids: Iterable[int], task_path: str, database: str = "default") -> Repointed:
    """Point the runs ``run_ids`` that are READY, WAITING, FAILED or CANCELLED at the task
    registered at ``task_path``: a worker then runs that task for them (a FAILED or
    CANCELLED one once retried). Those RUNNING or SUCCESSFUL, gone meanwhile, or pointed
    there already are left as they are.

    The runs are locked while they change, so a claim cannot take one half-way; each keeps
    its arguments, options and limit keys. A run of a unique task whose key an active run
    of ``task_path`` holds already is left, and said."""
    check_target(task_path)
    done = Repointed()
    ids = list(dict.fromkeys(int(run_id) for run_id in run_ids))
    runs = Run.objects.using(database)
    with transaction.atomic(using=database):
        rows = dict(
            runs.select_for_update()
            .filter(pk__in=ids, status__in=REPOINTABLE)
            .exclude(task_path=task_path)
            .values_list("pk", "task_path")
        )
        try:
            with transaction.atomic(using=database):
                runs.filter(pk__in=list(rows)).update(task_path=task_path)
            moved = list(rows)
        except IntegrityError:
            # The unique index refused one: run by run, to move all the others.
            moved = []
            for run_id in rows:
                try:
                    with transaction.atomic(using=database):
                        runs.filter(pk=run_id).update(task_path=task_path)
                except IntegrityError:
                    done.problems.append(
                        f"run {run_id}: an active run of {task_path} holds its unique key"
                    )
                    continue
                moved.append(run_id)
    for run_id in moved:
        done.by_old_path.setdefault(rows[run_id], []).append(run_id)
    done.left = len(ids) - len(moved) - len(done.problems)
    return done
