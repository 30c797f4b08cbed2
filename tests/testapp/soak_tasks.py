"""The chaos soak's tasks (tests/faults/soak): one per kind of run, each logging what it did.

Every task writes ``start <run id> <attempt> <kind>`` before its body and ``end <run id>
<attempt>`` after it to its worker process's side-effect log, so the checker can tell, for
every attempt, whether and where it ran, and how often. The tasks under a limit (issue 23)
add the key their limit counts under and the time: ``start <run id> <attempt> <kind> <key>
<time>``, ``end <run id> <attempt> <key> <time>``, from which the checker measures how many
ran at once, and how many began in a rate's window.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import taskmill

from .tasks import _record


def _start(context, kind: str) -> tuple[str, int]:
    run_id, attempt = context.task_result.id, context.attempt
    _record(f"start {run_id} {attempt} {kind}")
    return run_id, attempt


def _end(run_id: str, attempt: int) -> None:
    _record(f"end {run_id} {attempt}")


def _limited(context, kind: str, key: str, pause: float) -> None:
    """A limited task's body: its start and end, with its key and the time, around a pause."""
    run_id, attempt = context.task_result.id, context.attempt
    _record(f"start {run_id} {attempt} {kind} {key} {time.time():.6f}")
    time.sleep(pause)
    _record(f"end {run_id} {attempt} {key} {time.time():.6f}")


@taskmill.task(takes_context=True)
def plain(context, token: str, pause: float) -> str:
    run_id, attempt = _start(context, "plain")
    time.sleep(pause)
    _end(run_id, attempt)
    return token


@taskmill.task(takes_context=True, max_attempts=3, backoff=lambda attempt, exc: 0.2)
def flaky(context, token: str, succeed_at: int) -> str:
    """Fails its first attempts (up to ``succeed_at`` - 1), then succeeds."""
    run_id, attempt = _start(context, "flaky")
    _end(run_id, attempt)
    if attempt < succeed_at:
        raise ConnectionError(f"{token}: attempt {attempt} fails on purpose")
    return token


@taskmill.task(takes_context=True, timeout=1, max_attempts=2, backoff=lambda attempt, exc: 0)
def overruns(context, token: str) -> None:
    """Always runs past its 1 s timeout: killed twice, then FAILED."""
    _start(context, "overruns")
    time.sleep(30)


@taskmill.task(takes_context=True, timeout=20)
def in_child(context, token: str) -> str:
    """A short task with a hard timeout: it runs in a worker's child process."""
    run_id, attempt = _start(context, "in_child")
    time.sleep(0.05)
    _end(run_id, attempt)
    return token


@taskmill.task(takes_context=True, unique=True)
def unique_job(context, key: str) -> str:
    run_id, attempt = _start(context, "unique")
    time.sleep(0.3)
    _end(run_id, attempt)
    return key


@taskmill.task(takes_context=True)
def fails(context, token: str) -> None:
    """Fails for good (one attempt): its dependents are cancelled, its on_failure runs."""
    run_id, attempt = _start(context, "fails")
    _end(run_id, attempt)
    raise ValueError(f"{token} fails on purpose")


@taskmill.task(takes_context=True)
def after(context, token: str) -> str:
    """Enqueued with depends_on: runs only once its dependency succeeded."""
    run_id, attempt = _start(context, "after")
    _end(run_id, attempt)
    return token


def _noted(context, kind: str, of: str) -> str:
    """A callback's body: it ran, for ``of`` (a run's or a batch's id): the checker counts."""
    run_id, attempt = _start(context, f"{kind}:{of}")
    _end(run_id, attempt)
    return of


@taskmill.task(takes_context=True)
def callback_ok(context, parent_id: str) -> str:
    return _noted(context, "callback_ok", parent_id)


@taskmill.task(takes_context=True)
def callback_failed(context, parent_id: str) -> str:
    return _noted(context, "callback_failed", parent_id)


@taskmill.task(
    takes_context=True,
    on_success="tests.testapp.soak_tasks.callback_ok",
    on_failure="tests.testapp.soak_tasks.callback_failed",
)
def with_callbacks(context, token: str, succeed: bool) -> str:
    run_id, attempt = _start(context, "with_callbacks")
    _end(run_id, attempt)
    if not succeed:
        raise ValueError(f"{token} fails on purpose")
    return token


@taskmill.task(takes_context=True, atomic=True)
def atomic_row(context, token: str, pause: float) -> str:
    """Inserts one row in the attempt's transaction: it must exist exactly once."""
    from .models import Effect

    run_id, attempt = _start(context, "atomic")
    Effect.objects.create(name=f"soak-{run_id}")
    time.sleep(pause)
    _end(run_id, attempt)
    return token


@taskmill.task(takes_context=True)
async def async_job(context, token: str) -> str:
    run_id, attempt = _start(context, "async")
    await asyncio.sleep(0.02)
    _end(run_id, attempt)
    return token


@taskmill.task(takes_context=True)
def scheduled(context, fired_for: str | None = None) -> str | None:
    run_id, attempt = _start(context, "scheduled")
    _end(run_id, attempt)
    return fired_for


# -- flow control (issue 23): each logs its key; the checker knows the limits from here ----

RATE = taskmill.Rate(20, per=timedelta(seconds=5))


@taskmill.task(takes_context=True, concurrency_limit=1, concurrency_key="account")
def one_per_account(context, token: str, *, account: str, pause: float) -> str:
    _limited(context, "one_per_account", f"one_per_account:{account}", pause)
    return token


@taskmill.task(takes_context=True, concurrency_limit=2)
def two_at_once(context, token: str, pause: float) -> str:
    _limited(context, "two_at_once", "two_at_once", pause)
    return token


@taskmill.task(takes_context=True, rate_limit=RATE)
def rate_limited(context, token: str) -> str:
    _limited(context, "rate_limited", "rate_limited", 0.0)
    return token


@taskmill.task(takes_context=True, fair_key="tenant")
def fair_share(context, token: str, *, tenant: str) -> str:
    _limited(context, "fair_share", f"fair_share:{tenant}", 0.02)
    return token


@taskmill.task(takes_context=True)
def metered(context, token: str, pause: float) -> str:
    """Enqueued to the soak's limited queue (tests/faults/soak/settings.py): the queue's
    limit holds it, not the task's."""
    _limited(context, "metered", "metered", pause)
    return token


# -- composition (issue 24): batches, pipelines, snoozes ------------------------------------


@taskmill.task(takes_context=True)
def batch_finished(context, batch_id: str) -> str:
    """A batch's on_finish: the checker counts these runs by batch (exactly one each)."""
    return _noted(context, "batch_finished", batch_id)


@taskmill.task(takes_context=True)
def batch_succeeded(context, batch_id: str) -> str:
    return _noted(context, "batch_succeeded", batch_id)


@taskmill.task(takes_context=True)
def batch_failed(context, batch_id: str) -> str:
    return _noted(context, "batch_failed", batch_id)


@taskmill.task(takes_context=True, max_attempts=3, backoff=lambda attempt, exc: 0.2)
def batch_member(context, token: str, outcome: str, adds: int = 0) -> str:
    """A batch's member: ``outcome`` "ok", "flaky" (fails its first attempt, then succeeds:
    a success for the batch) or "fails" (every attempt). ``adds`` more members it adds to
    its batch while it runs (again on a retry: the batch counts what it holds)."""
    run_id, attempt = _start(context, "batch_member")
    for number in range(adds):
        context.batch.add(batch_member, f"{token}.{attempt}.{number}", "ok")
    time.sleep(0.02)
    _end(run_id, attempt)
    if outcome == "fails" or (outcome == "flaky" and attempt == 1):
        raise ValueError(f"{token}: {outcome} on purpose (attempt {attempt})")
    return token


@taskmill.task(takes_context=True)
def pipe_step(context, token: str, step: int) -> int:
    """Step ``step`` of a pipeline: it must read step - 1 from the step before it (through
    ``context.dependency_results``), and returns its own number to the next."""
    run_id, attempt = _start(context, "pipe_step")
    got = list(context.dependency_results.values())
    _end(run_id, attempt)
    want = [] if step == 1 else [step - 1]
    if got != want:
        raise ValueError(f"{token} step {step}: dependency_results {got}, expected {want}")
    return step


@taskmill.task(takes_context=True)
def pipe_finally(context, token: str, last_step: int) -> str:
    """The pipeline's last step, enqueued with on_dependency_failure="run": it runs whatever
    the step before it did, and reads its value (None when that step failed or was
    cancelled)."""
    from taskmill.models import Run

    run_id, attempt = _start(context, "pipe_finally")
    (dependency, value), *more = context.dependency_results.items()
    _end(run_id, attempt)
    status = Run.objects.values_list("status", flat=True).get(pk=int(dependency))
    if more or value != (last_step if status == "SUCCESSFUL" else None):
        raise ValueError(f"{token}: dependency {dependency} {status} gave {value!r}")
    return token


@taskmill.task(takes_context=True, max_attempts=2, backoff=lambda attempt, exc: 0.1)
def snoozer(context, token: str, snoozes: int) -> str:
    """Snoozes ``snoozes`` times, then fails once, then succeeds: with max_attempts=2 it
    succeeds only if the snoozes used none of its attempts."""
    from taskmill.models import Run

    run_id, attempt = _start(context, "snoozer")
    row = Run.objects.values("snoozes", "errors").get(pk=int(run_id))
    _end(run_id, attempt)
    if row["snoozes"] < snoozes:
        raise taskmill.Snooze(0.1)
    if not row["errors"]:
        raise ConnectionError(f"{token}: fails once after {snoozes} snoozes, on purpose")
    return token
