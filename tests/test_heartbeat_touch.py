"""A worker out of touch (its heartbeat silent: frozen, or the database away) asks the
database before it starts a run queued before the silence, even once the heartbeat lands
again: the run may have been rescued and claimed by another worker meanwhile. (CI's SQLite
soak: a worker whose writes waited behind a frozen worker's lock started such a run the
moment it reached the database again, beside the run that had taken its slot.)"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from taskmill.db import get_engine
from taskmill.worker import WorkerOptions
from taskmill.worker.duties.heartbeat import Heartbeat

pytestmark = pytest.mark.django_db


class IdlePort:
    """The worker's side of the heartbeat, for a worker that holds nothing."""

    processed = 0
    stopping = False

    def held_runs(self):
        return {}, set(), set()

    def marks_written(self, written):
        pass

    def stop_runs(self, run_ids, snapshot, reason):
        pass

    def fence(self):
        pass

    def unfence(self):
        pass

    def request_stop(self):
        pass


def test_a_run_queued_before_a_silence_asks_even_after_the_heartbeat_is_back():
    heartbeat = Heartbeat(IdlePort(), "touch@test", WorkerOptions(), get_engine("default"))
    heartbeat.beat(timezone.now())
    queued = time.monotonic()
    assert not heartbeat.out_of_touch(queued)

    heartbeat.last_success -= heartbeat.silence + 1  # no heartbeat landed for that long
    assert heartbeat.out_of_touch() and heartbeat.out_of_touch(queued)

    heartbeat.beat(timezone.now())  # back in touch
    assert not heartbeat.out_of_touch()
    assert heartbeat.out_of_touch(queued)  # queued before the silence ended: ask first
    assert not heartbeat.out_of_touch(time.monotonic())  # queued since: nothing to ask
