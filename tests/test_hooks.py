"""Enqueue hooks (taskmill.hooks): entered before the runs are inserted, with what they add
to the runs' metadata stored, and left once the runs have their ids; every way of enqueueing
passes through them; a hook that fails stops the enqueue; removed, it is called no more."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from taskmill import hooks
from taskmill.models import Run
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, list[int | None], list[int | None]]] = []

    @contextmanager
    def __call__(self, task, runs) -> Iterator[None]:
        before = [run.pk for run in runs]
        for number, run in enumerate(runs):
            metadata = run.extra.setdefault("metadata", {})
            metadata["hooked"] = number
        yield
        self.seen.append((task.module_path, before, [run.pk for run in runs]))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    hook = Recorder()
    hooks.add_enqueue_hook(hook)
    hooks.add_enqueue_hook(hook)  # once, however often added
    yield hook
    hooks.remove_enqueue_hook(hook)


def test_a_hook_sees_the_runs_before_their_insert_and_after_it(recorder):
    one = tasks.add.using(metadata={"tenant": "acme"}).enqueue(1, 2)
    many = tasks.add.enqueue_many([((1, 1), {}), ((2, 2), {})])
    assert recorder.seen == [
        ("tests.testapp.tasks.add", [None], [int(one.id)]),
        ("tests.testapp.tasks.add", [None, None], [int(r.id) for r in many]),
    ]
    # What it added is stored with what the caller gave, and in the results returned.
    assert Run.objects.get(pk=int(one.id)).metadata == {"tenant": "acme", "hooked": 0}
    assert [r.metadata["hooked"] for r in many] == [0, 1]
    assert [Run.objects.get(pk=int(r.id)).metadata for r in many] == [
        {"hooked": 0},
        {"hooked": 1},
    ]


def test_a_hook_that_fails_stops_the_enqueue_and_a_removed_one_is_not_called(recorder):
    @contextmanager
    def refusing(task, runs):
        raise RuntimeError("no")
        yield

    hooks.add_enqueue_hook(refusing)
    try:
        with pytest.raises(RuntimeError, match="no"):
            tasks.add.enqueue(1, 2)
    finally:
        hooks.remove_enqueue_hook(refusing)
    assert not Run.objects.exists()
    hooks.remove_enqueue_hook(recorder)
    tasks.add.enqueue(1, 2)
    assert recorder.seen == []
    assert Run.objects.get().metadata in (None, {})
