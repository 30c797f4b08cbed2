"""Concurrent claimers and finishers, each on its own connection, through the engine: the
claim's and the finish's atomicity is what keeps a run from running twice or being lost."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connections

from taskmill.db import Engine, get_engine
from taskmill.models import Run

from .helpers import claim, insert, new_run, outcome

pytestmark = pytest.mark.django_db(transaction=True)

CLAIMERS = 4


def run_threads(target: Callable[[str], None], count: int) -> None:
    """``target(name)`` in ``count`` threads, each with its own connections (closed after)."""
    errors: list[BaseException] = []

    def body(name: str) -> None:
        try:
            target(name)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(f"w{i}",)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def test_concurrent_claimers_take_every_run_exactly_once(engine: Engine) -> None:
    total = 400
    insert(engine, *[new_run(priority=i % 3) for i in range(total)])
    taken: list[tuple[str, int]] = []
    landed: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        mine = get_engine("default")
        while batch := claim(mine, name, limit=7):
            assert all(run.attempt == 1 and run.worker_ids == [name] for run in batch)
            done = mine.finish([outcome(run) for run in batch])
            with lock:
                taken.extend((name, run.id) for run in batch)
                landed.extend(done)

    run_threads(claimer, CLAIMERS)
    counts = Counter(run_id for _, run_id in taken)
    assert len(counts) == total and set(counts.values()) == {1}
    assert sorted(landed) == sorted(counts)
    rows = Run.objects.values_list("pk", "status", "attempt", "worker_ids")
    owner = dict((run_id, name) for name, run_id in taken)
    for pk, status, attempt, worker_ids in rows:
        assert (status, attempt, worker_ids) == ("SUCCESSFUL", 1, [owner[pk]])


def test_concurrent_finishers_of_the_same_attempt_land_one_outcome(engine: Engine) -> None:
    insert(engine, *[new_run() for _ in range(30)])
    held = claim(engine, "w")
    landed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def finisher(name: str) -> None:
        mine = get_engine("default")
        for run in held:  # the same order everywhere: one row per statement
            for run_id in mine.finish([outcome(run, return_value=name)]):
                with lock:
                    landed.append((name, run_id))

    run_threads(finisher, CLAIMERS)
    assert Counter(run_id for _, run_id in landed) == Counter(run.id for run in held)
    written = dict(Run.objects.values_list("pk", "return_value"))
    assert written == {run_id: name for name, run_id in landed}
