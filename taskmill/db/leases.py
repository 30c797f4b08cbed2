"""Leases: the SQL of heartbeats, rescue and atomic attempts, shared by every engine.

None of it is on the hot path (a heartbeat every few seconds, a rescue when a worker died),
so it is written once, in SQL all three databases speak; engines only say how they lock.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..status import RunStatus
from .records import RUN_TABLE, HeartbeatReply, load_json, make_state_harmless


class LeaseQueries:
    """Mixed into ``BaseEngine``: needs ``connection``, ``alias`` and ``adapt_datetime``.
    What each operation guarantees is written in ``contract.Engine``."""

    # How this database locks a row it read (SQLite locks the whole database on write).
    for_update = " FOR UPDATE"

    def lock_attempt(self, run_id: int, attempt: int, worker_id: str | None = None) -> bool:
        """Lock the run's row if it still holds ``attempt``, RUNNING (atomic tasks)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {RUN_TABLE} WHERE id = %s AND attempt = %s "
                "AND worker_id = COALESCE(%s, worker_id) "
                f"AND status = '{RunStatus.RUNNING}'{self.for_update}",
                [run_id, attempt, worker_id],
            )
            return cursor.fetchone() is not None

    # Locking rows others may hold: skip them rather than wait (SQLite: whole-database lock).
    skip_locked = " FOR UPDATE SKIP LOCKED"

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
        """Renew the leases of the runs this worker holds (id -> attempt).

        Single statements in autocommit, no transaction: a worker frozen (SIGSTOP, a long
        pause) between two of them holds no lock that would keep others from rescuing its
        runs. A row still RUNNING with our attempt is renewed; one that is not (rescued,
        cancelled) is lost to us. ``skip`` are our atomic tasks' rows, locked by their own
        transactions: not touched (the rescue passes over locked rows). ``waiting``
        (claimed, not started) are marked prefetched, so that a rescue returns them
        without a lost attempt.
        """
        from ..models import Worker

        reply = HeartbeatReply(set(), set(), set(), False)
        renew = {run_id: attempt for run_id, attempt in held.items() if run_id not in skip}
        with self.connection.cursor() as cursor:
            if renew:
                marked = sorted(set(renew) & waiting) or [0]
                pairs = ", ".join(["(%s, %s)"] * len(renew))
                cursor.execute(
                    f"UPDATE {RUN_TABLE} SET lease_expires_at = %s, prefetched = CASE "
                    f"WHEN id IN ({', '.join(['%s'] * len(marked))}) THEN TRUE ELSE FALSE END "
                    f"WHERE (id, attempt) IN ({pairs}) AND worker_id = %s "
                    f"AND status = '{RunStatus.RUNNING}'",
                    [
                        self.adapt_datetime(lease_until),
                        *marked,
                        *(value for pair in renew.items() for value in pair),
                        worker_id,
                    ],
                )
            if held:
                ids = list(held)
                cursor.execute(
                    f"SELECT id, attempt, status, worker_id, stop_requested FROM {RUN_TABLE} "
                    f"WHERE id IN ({', '.join(['%s'] * len(ids))})",
                    ids,
                )
                for run_id, attempt, status, owner, stop in cursor.fetchall():
                    ours = attempt == held[run_id] and owner == worker_id
                    if status == RunStatus.RUNNING and ours:
                        if run_id in renew:
                            reply.renewed.add(run_id)
                        if stop:
                            reply.stop_requested.add(run_id)
                    else:
                        reply.lost.add(run_id)
        workers = Worker.objects.using(self.alias)
        if workers.filter(pk=worker_id).update(last_heartbeat_at=now, **worker_fields):
            reply.shutdown_requested = bool(
                workers.filter(pk=worker_id).values_list("shutdown_requested", flat=True).first()
            )
        return reply

    def unmark_prefetched(
        self,
        run_id: int,
        attempt: int,
        now: datetime,
        connection: Any = None,
        worker_id: str | None = None,
    ) -> bool:
        """A run the last heartbeat marked as not started is starting now. False if it is no
        longer ours to start: rescued as never started (while this worker was frozen, say),
        or claimed again since; starting it then would run it twice.

        Its start is written too: the claim's stand-in is older by the time it waited, and
        readers see it RUNNING again from here (the outcome writes the exact start)."""
        stamp = self.adapt_datetime(now)
        with (connection or self.connection).cursor() as cursor:
            cursor.execute(
                f"UPDATE {RUN_TABLE} SET prefetched = FALSE, started_at = %s, "
                "last_attempted_at = %s WHERE id = %s AND attempt = %s "
                f"AND worker_id = COALESCE(%s, worker_id) AND status = '{RunStatus.RUNNING}'",
                [stamp, stamp, run_id, attempt, worker_id],
            )
            return cursor.rowcount > 0

    def expired_runs(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """RUNNING runs whose lease ran out, locked for the rescuer (call in a transaction).

        Reads the running-runs index (few rows) and checks the lease on each."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, attempt, task_path, queue_name, worker_id, prefetched, "
                f"stop_requested, has_dependents, errors, worker_ids, options, concurrency_key, "
                f"batch_id "
                f"FROM {RUN_TABLE} "
                f"WHERE {self.running_condition} AND lease_expires_at < %s "
                f"ORDER BY lease_expires_at, id LIMIT %s{self.skip_locked}",
                [self.adapt_datetime(now), limit],
            )
            columns = [column[0] for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            for name in ("errors", "worker_ids", "options"):
                row[name] = load_json(row[name])
            make_state_harmless(row)
            row["prefetched"] = bool(row["prefetched"])
            row["stop_requested"] = bool(row["stop_requested"])
            row["has_dependents"] = bool(row["has_dependents"])
        return rows

    def rescue(self, run_id: int, attempt: int, now: datetime, values: dict[str, Any]) -> bool:
        """Write a rescued run's new state; only if it still holds ``attempt``, RUNNING, with
        its lease expired (re-checked here: a stale read must never revert a finished run)."""
        assignments = ", ".join(f"{name} = %s" for name in values)
        params = [
            json.dumps(value) if isinstance(value, list | dict) else self.adapt_value(value)
            for value in values.values()
        ]
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {RUN_TABLE} SET {assignments} WHERE id = %s AND attempt = %s "
                f"AND status = '{RunStatus.RUNNING}' AND lease_expires_at < %s",
                [*params, run_id, attempt, self.adapt_datetime(now)],
            )
            return cursor.rowcount == 1

    def adapt_value(self, value: Any) -> Any:
        return self.adapt_datetime(value) if isinstance(value, datetime) else value
