"""A self-fenced worker's attempts end lost, never cancelled: also one a task thread took
after the fence looked at what was running (the chaos soak found such a run CANCELLED: its
child, started in that instant, was killed by the fence and read as a stop request)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from taskmill.db import get_engine
from taskmill.models import RunStatus
from taskmill.worker.attempt import Completed
from taskmill.worker.executor import Executor
from tests.conftest import wait_until
from tests.testapp import execution_tasks

pytestmark = pytest.mark.django_db(transaction=True)


def _stopped_after_taking(*, fence_lifted: bool) -> Completed:
    """A run taken by a task thread after fence() (and unfence(), if ``fence_lifted``),
    then stopped as the fence's kill of the children, or a stop request, stops it."""
    execution_tasks.cooperative_loop.enqueue()
    now = timezone.now()
    (run,) = get_engine("default").claim(
        worker_id="w", limit=1, now=now, lease_until=now + dt.timedelta(minutes=1), queues=None
    )
    done: list[Completed] = []
    executor = Executor(1, done.append, database="default")
    try:
        executor.fence()  # nothing has started: the fence finds nothing to stop
        if fence_lifted:
            executor.unfence()  # the heartbeat reached the database again
        executor.submit([run])
        wait_until(executor.started, message="the run to start on a task thread")
        assert executor.request_stop(run.id)
        return wait_until(lambda: done and done[0], message="the attempt to end")
    finally:
        executor.shutdown()


def test_a_run_taken_while_the_worker_is_fenced_ends_lost_when_stopped():
    completed = _stopped_after_taking(fence_lifted=False)
    assert completed.outcome.status == RunStatus.READY  # going again, not CANCELLED
    assert [e["exception_class_path"] for e in completed.outcome.errors] == [
        "taskmill.exceptions.WorkerLost"
    ]


def test_a_run_taken_after_the_fence_is_lifted_is_stopped_as_asked():
    completed = _stopped_after_taking(fence_lifted=True)
    assert completed.outcome.status == RunStatus.CANCELLED
