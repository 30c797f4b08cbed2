"""The finish's SQL, written once: what landing an outcome writes on the run's row.

Each engine finishes a whole batch in one statement (two on MySQL), joining the run table to
the outcomes as a derived table ``done``; they differ only in how the outcomes travel
(a JSON document, literal rows) and how the result comes back. The assignments and the
fencing condition are the same for all, so they are built here, at import.
"""

from __future__ import annotations

from ..status import RunStatus

# A retry (READY) of a run whose stop was requested meanwhile becomes CANCELLED: a stop is
# final even when the attempt failed on its own first. Only a final status sets the finish
# and the expiry.
_DECIDED_HERE = f"""status = CASE WHEN done.status <> '{RunStatus.READY}' THEN done.status
                  WHEN {{run}}.stop_requested THEN '{RunStatus.CANCELLED}'
                  ELSE '{RunStatus.READY}' END,
    finished_at = CASE WHEN done.status <> '{RunStatus.READY}' OR {{run}}.stop_requested
                       THEN done.finished_at END,
    expires_at = CASE WHEN done.status <> '{RunStatus.READY}' OR {{run}}.stop_requested
                      THEN done.expires_at END"""
# The same three, decided by the caller from the rows it locked (MySQL: no RETURNING).
_DECIDED_BEFORE = """{set}status = done.status,
    {set}finished_at = done.finished_at,
    {set}expires_at = done.expires_at"""
# The attempt's start comes with its outcome; an outcome without one (a lost attempt) keeps
# a retry's earlier start and clears a first attempt's stand-in. A snooze brings the run's
# new snooze count; any other outcome leaves it. Metadata comes with an outcome only when
# the attempt changed it: otherwise the row keeps what the attempt saved
# (taskmill.worker.metadata), never the claim's older copy. No assignment reads a column
# assigned before it: MySQL would see the new value.
_ALWAYS = """{set}available_at = COALESCE(done.available_at, {run}.available_at),
    {set}due = COALESCE(done.due, {run}.due),
    {set}return_value = done.return_value,
    {set}errors = done.errors,
    {set}snoozes = COALESCE(done.snoozes, {run}.snoozes),
    {set}started_at = COALESCE(
        done.started_at, CASE WHEN {run}.attempt > 1 THEN {run}.started_at END
    ),
    {set}last_attempted_at = COALESCE(
        done.started_at, CASE WHEN {run}.attempt > 1 THEN {run}.last_attempted_at END
    ),
    {set}worker_id = '',
    {set}lease_expires_at = NULL,
    {set}prefetched = FALSE,
    {set}metadata = COALESCE(done.metadata, {run}.metadata)"""


def finish_assignments(run: str, *, status_decided: bool = False) -> str:
    """The SET list landing ``done``'s outcome on the row ``run`` (the table or its alias).

    ``status_decided``: ``done`` carries the final status, finish and expiry (the caller
    read the rows, locked), and the targets are qualified, as MySQL's multi-table UPDATE
    needs; otherwise the statement decides them from the row it updates."""
    qualifier = f"{run}." if status_decided else ""
    head = _DECIDED_BEFORE if status_decided else _DECIDED_HERE
    return f"{head},\n    {_ALWAYS}".format(run=run, set=qualifier)


def fenced(run: str) -> str:
    """The fencing condition: the row still RUNNING with the outcome's attempt, held by the
    worker that writes it (one placeholder: its id, or NULL for any holder). The attempt
    alone is not enough: a run returned unstarted (rescued while prefetched, handed back by
    a limit's gate) is claimed again under the same attempt number, by another worker."""
    return (
        f"{run}.id = done.id AND {run}.attempt = done.attempt "
        f"AND {run}.status = '{RunStatus.RUNNING}' "
        f"AND {run}.worker_id = COALESCE(%s, {run}.worker_id)"
    )
