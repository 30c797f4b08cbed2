"""The soak's composition (issue 24): batches whose members add members, pipelines that pass
results, snoozing tasks; and their checks.

- **batches**: each producer's batch has 2 to 5 members, some flaky (a retry that succeeds
  is a success), some failing for good, one perhaps adding members while it runs. Once every
  member ended, the checker wants the batch finished with counts that match its members'
  final states, and exactly one ``on_finish`` run plus exactly one ``on_success`` (every
  member succeeded) or ``on_failure`` (any failed or was cancelled) run: none is "callback
  missing", two are "callback doubled", the wrong one is "wrong".
- **pipelines**: three steps by ``depends_on``, each reading the one before through
  ``context.dependency_results``, then a last step with ``on_dependency_failure="run"``;
  the tasks check the values they read themselves (a wrong one fails its run).
- **snoozes**: a task that snoozes, then fails once, then succeeds with ``max_attempts=2``:
  it ends SUCCESSFUL only if its snoozes used none of its attempts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from tests.testapp import soak_tasks

if TYPE_CHECKING:
    from .checker import Report

TASKS = "tests.testapp.soak_tasks"
MEMBER_OUTCOMES = ("ok", "ok", "ok", "flaky", "fails")
CALLBACKS = {
    "batch_finished": "on_finish",
    "batch_succeeded": "on_success",
    "batch_failed": "on_failure",
}


class ComposingProducer:
    """The producer's composition kinds (a mixin of producer.Producer: ``rng``, ``_token``,
    ``_submit``, ``_remember``)."""

    rng: Any

    def _enqueue_batch(self) -> None:
        import taskmill

        from .producer import with_database_retries

        token = self._token("batch")
        outcomes = [self.rng.choice(MEMBER_OUTCOMES) for _ in range(self.rng.randint(2, 5))]
        adder = self.rng.random() < 0.4
        batch = taskmill.batch(
            on_finish=soak_tasks.batch_finished,
            on_success=soak_tasks.batch_succeeded,
            on_failure=soak_tasks.batch_failed,
            description=token,
        )
        path = f"{TASKS}.batch_member"
        try:
            with batch:
                for number, outcome in enumerate(outcomes):
                    member = f"{token}.{number}"
                    adds = 2 if adder and number == 0 else 0
                    self._submit(
                        path,
                        member,
                        lambda member=member, outcome=outcome, adds=adds: (
                            soak_tasks.batch_member.enqueue(member, outcome, adds)
                        ),
                    )
        except DatabaseError:
            pass  # what the block enqueued is a batch all the same, sealed below
        finally:
            if batch.pk is not None and not batch.sealed:
                # The block's seal failed (the database was restarting): seal it once the
                # database is back, as a project's code would.
                with_database_retries(batch.seal)

    def _enqueue_pipeline(self) -> None:
        token = self._token("pipe")
        previous: int | None = None
        for step in (1, 2, 3):
            previous = self._step(token, soak_tasks.pipe_step, previous, step, "cancel")
        self._step(token, soak_tasks.pipe_finally, previous, 3, "run")

    def _step(self, token: str, task: Any, after: int | None, step: int, policy: str) -> int:
        name = task.func.__name__
        step_token = f"{token}.{step}" if name == "pipe_step" else f"{token}.finally"
        bound = task
        if after is not None:
            bound = task.using(depends_on=[str(after)], on_dependency_failure=policy)
        run_id = self._submit(
            f"{TASKS}.{name}", step_token, lambda: bound.enqueue(step_token, step)
        )
        return self._remember(step_token, name, run_id, depends_on=after)

    def _enqueue_snoozer(self) -> None:
        token = self._token("snoozer")
        snoozes = self.rng.randint(1, 4)
        run_id = self._submit(
            f"{TASKS}.snoozer", token, lambda: soak_tasks.snoozer.enqueue(token, snoozes)
        )
        self._remember(token, "snoozer", run_id, snoozes=snoozes)

    # The mixin's methods are looked up by name (Producer.enqueue_one): declared for typing.
    def _token(self, kind: str) -> str:  # pragma: no cover - Producer's
        raise NotImplementedError

    def _submit(self, task_path: str, token: str, enqueue: Any) -> int:  # pragma: no cover
        raise NotImplementedError

    def _remember(self, token: str, kind: str, run_id: int, **params: object) -> int:
        raise NotImplementedError  # pragma: no cover - Producer's


# -- the checks -------------------------------------------------------------------------------


def expected_status(kind: str, row: dict, rows: dict[int, dict], params: dict) -> str | None:
    """The final status a composition run must end in, or None if ``kind`` is not one."""
    if kind == "batch_member":
        outcome = row["args"][1]
        return "FAILED" if outcome == "fails" else "SUCCESSFUL"
    if kind == "pipe_step" and params.get("depends_on") is not None:
        dependency = rows.get(params["depends_on"])
        if dependency is None or dependency["status"] != "SUCCESSFUL":
            return "CANCELLED"
        return "SUCCESSFUL"
    if kind in ("pipe_step", "pipe_finally", "snoozer") or kind in CALLBACKS:
        return "SUCCESSFUL"
    return None


def check_batches(report: Report, rows: dict[int, dict]) -> None:
    """Every batch the producer opened: finished once its members all ended, its counts
    those of its members, and each callback it must fire run exactly once."""
    from taskmill.models import Batch

    members: dict[int, Counter] = defaultdict(Counter)
    fired: dict[str, Counter] = defaultdict(Counter)
    for row in rows.values():
        if row["batch_id"] is not None:
            members[row["batch_id"]][row["status"]] += 1
        name = row["task_path"].removeprefix(f"{TASKS}.")
        if name in CALLBACKS:
            fired[row["args"][0]][CALLBACKS[name]] += 1
    for batch in Batch.objects.filter(description__startswith="batch-"):
        statuses = members[batch.pk]
        label = f"batch {batch.pk} ({batch.description})"
        if not batch.sealed and not statuses:
            report.orphan_batches += 1  # its creation failed on a broken connection
            continue
        report.batches += 1
        if not batch.sealed:
            report.flag("stuck", f"{label} was never sealed")
            continue
        if any(status in ("READY", "WAITING", "RUNNING") for status in statuses):
            continue  # a member still active is the runs' check (stuck)
        _check_batch(report, batch, statuses, fired[str(batch.pk)], label)


def _check_batch(report: Report, batch: Any, statuses: Counter, fired: Counter, label: str) -> None:
    if batch.finished_at is None:
        report.flag("callback_missing", f"{label}: every member ended, the batch never finished")
        return
    counted = (batch.total, batch.succeeded, batch.failed, batch.cancelled)
    actual = (
        statuses.total(),
        statuses["SUCCESSFUL"],
        statuses["FAILED"],
        statuses["CANCELLED"],
    )
    if counted != actual:
        report.flag("wrong", f"{label} counted (total, ok, failed, cancelled) {counted}: {actual}")
    succeeded = statuses["SUCCESSFUL"] == statuses.total()
    wanted = {"on_finish": 1, "on_success": int(succeeded), "on_failure": int(not succeeded)}
    for callback, want in wanted.items():
        got = fired[callback]
        if got > want and want:
            report.flag("callback_doubled", f"{label}: {got} {callback} runs")
        elif got > want:
            report.flag("wrong", f"{label}: {callback} ran, its members ended {dict(statuses)}")
        elif got < want:
            report.flag("callback_missing", f"{label}: no {callback} run")
