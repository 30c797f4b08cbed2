"""Run what is queued inside your own tests, with taskmill's real worker.

``run_queued()`` runs burst workers (the same ``Worker`` as ``manage.py taskmill worker
--burst``) in the test's process until nothing is left to run, so retries, callbacks,
dependencies, unique runs, signals and JSON checks behave exactly as in production::

    from taskmill.testing import run_queued

    @pytest.mark.django_db(transaction=True)
    def test_signup_sends_welcome(client, mailoutbox):
        client.post("/signup/", {...})
        drained = run_queued()
        assert drained.attempts == 1
        assert len(mailoutbox) == 1

It needs committed data. The worker claims on the test's own connection, but runs each
task on a thread with its own connection, and renews leases from another: inside a
transaction that is never committed (Django's ``TestCase``, pytest-django's plain
``django_db``, an ``atomic()`` block) those connections cannot see the runs, or wait on
the rows the test's transaction has locked. So ``run_queued()`` refuses to start inside
one, with ``RuntimeError``, instead of hanging. Use ``TransactionTestCase`` or
``@pytest.mark.django_db(transaction=True)`` (the ``transactional_db`` fixture).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connections
from django.utils import timezone

from .models import Run, RunStatus
from .worker import Worker, WorkerOptions

# Short polls: the worker's idle back-off must not make a test wait a second for nothing.
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Drained:
    """What ``run_queued()`` did."""

    # Attempts whose outcome was written: a run that failed twice and then succeeded is 3.
    attempts: int
    # Burst workers started: one, plus one per round that deferred runs or runs made ready
    # by the last round (dependents, callbacks) needed.
    rounds: int
    # Runs of the served queues still READY or WAITING: deferred ones when
    # ``include_deferred=False``, those of a paused queue, dependents of a run that never ran.
    left: int


def run_queued(
    *,
    database: str = "default",
    queues: Sequence[str] | None = None,
    exclude_queues: Sequence[str] = (),
    include_deferred: bool = True,
    concurrency: int = 1,
    timeout: float = 60.0,
) -> Drained:
    """Run queued tasks in this process until none is left to run; return what happened.

    ``include_deferred`` decides what "none left" means for runs waiting for a time:
    ``run_after`` in the future, or a retry's backoff delay.

    - ``True`` (default): such runs are made due at once, round after round, so a task that
      fails twice and then succeeds is finished when this returns, with no waiting.
      ``run_after`` itself is left as enqueued; only when the run may be claimed changes.
    - ``False``: only what is due now runs; deferred runs and retries stay READY and are
      counted in ``left``. Call again (or move the clock) to run them.

    ``timeout`` bounds the whole call in seconds: a task that enqueues itself for ever
    raises ``TimeoutError`` instead of hanging the test suite.

    Tasks declared with a ``timeout`` run in a child process, as in a worker. That child
    reads your settings afresh: if your test runner renamed the database (Django's
    ``test_`` prefix), its own queries go to the configured name, not the test database.
    """
    connection = connections[database]
    if connection.in_atomic_block:
        raise RuntimeError(
            "run_queued() cannot run inside a transaction (Django's TestCase, "
            "pytest.mark.django_db without transaction=True, or an atomic() block): the "
            "worker's threads use their own database connections, which cannot see what "
            "this transaction has not committed. Use TransactionTestCase or "
            "@pytest.mark.django_db(transaction=True)."
        )
    deadline = time.monotonic() + timeout
    attempts = rounds = 0
    while True:
        if include_deferred:
            _make_deferred_due(database, queues, exclude_queues)
        ran = _burst(database, queues, exclude_queues, concurrency, deadline)
        attempts += ran
        rounds += 1
        left = _left(database, queues, exclude_queues)
        if time.monotonic() >= deadline and left:
            raise TimeoutError(
                f"run_queued() still had {left} run(s) to go after {timeout}s "
                f"({attempts} attempt(s) in {rounds} round(s)); work that keeps coming back "
                "(a task that enqueues itself, retries without end) never drains."
            )
        # A round that ran nothing found nothing it could run: what is left (paused,
        # deferred with include_deferred=False, waiting on a run that never ran) stays.
        if not ran or not left:
            return Drained(attempts=attempts, rounds=rounds, left=left)


def _served(database: str, queues: Sequence[str] | None, exclude_queues: Sequence[str]):
    runs = Run.objects.using(database)
    if queues is not None:
        runs = runs.filter(queue_name__in=list(queues))
    if exclude_queues:
        runs = runs.exclude(queue_name__in=list(exclude_queues))
    return runs


def _make_deferred_due(
    database: str, queues: Sequence[str] | None, exclude_queues: Sequence[str]
) -> int:
    """Deferred READY runs (run_after, retry delays) become claimable now."""
    runs = _served(database, queues, exclude_queues)
    return runs.filter(status=RunStatus.READY, due=False).update(
        available_at=timezone.now(), due=True
    )


def _left(database: str, queues: Sequence[str] | None, exclude_queues: Sequence[str]) -> int:
    runs = _served(database, queues, exclude_queues)
    return runs.filter(status__in=[RunStatus.READY, RunStatus.WAITING]).count()


def _burst(
    database: str,
    queues: Sequence[str] | None,
    exclude_queues: Sequence[str],
    concurrency: int,
    deadline: float,
) -> int:
    """One burst worker, stopped (as SIGTERM would) if it runs past the deadline."""
    worker = Worker(
        WorkerOptions(
            database=database,
            queues=tuple(queues) if queues is not None else None,
            exclude_queues=tuple(exclude_queues),
            concurrency=concurrency,
            burst=True,
            label="taskmill.testing",
            poll_interval=POLL_INTERVAL,
            shutdown_timeout=5.0,
        )
    )
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), worker.request_stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        worker.run()
    finally:
        watchdog.cancel()
    return worker.processed
