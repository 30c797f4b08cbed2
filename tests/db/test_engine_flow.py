"""The contract's flow-control operation, through the engine: ``lock_or_create`` makes a
missing row once, leaves an existing one as it is, and holds its lock to the end of the
caller's transaction, so that concurrent read-modify-writes on the same keys, in any mix of
keys, neither lose an update nor deadlock."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import DatabaseError, connection, transaction

from taskmill.db import Engine, get_engine
from taskmill.models import Limit
from tests.conftest import held_by_another_transaction

from .test_engine_concurrency import run_threads

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = Limit._meta.db_table


def rows(*keys: str) -> list[dict[str, object]]:
    return [{"key": key, "concurrency_limit": None} for key in sorted(keys)]


def test_missing_rows_are_made_once_and_existing_ones_kept(engine: Engine) -> None:
    Limit.objects.create(key="b", concurrency_limit=3)
    with transaction.atomic():
        engine.lock_or_create(TABLE, "key", rows("a", "b", "c"))
        engine.lock_or_create(TABLE, "key", rows("a", "c"))
    assert dict(Limit.objects.values_list("key", "concurrency_limit")) == {
        "a": None,
        "b": 3,
        "c": None,
    }
    engine.lock_or_create(TABLE, "key", [])  # nothing to lock: nothing happens


@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite locks the whole database")
def test_the_rows_stay_locked_until_the_transaction_ends(engine: Engine) -> None:
    Limit.objects.create(key="a")

    def lock() -> None:
        get_engine("default").lock_or_create(TABLE, "key", rows("a"))

    with held_by_another_transaction(lock):
        with pytest.raises(DatabaseError), transaction.atomic():
            # NOWAIT: fails at once on a row another transaction holds.
            list(Limit.objects.select_for_update(nowait=True).filter(key="a"))
        with transaction.atomic():  # another key is free
            list(Limit.objects.select_for_update(nowait=True).filter(key="b"))


def test_concurrent_read_modify_writes_lose_no_update_and_do_not_deadlock(
    engine: Engine,
) -> None:
    keys = ["k1", "k2", "k3", "k4"]
    rounds = 25
    done: dict[str, int] = dict.fromkeys(keys, 0)
    tally = threading.Lock()

    def writer(name: str) -> None:
        mine = get_engine("default")
        chance = random.Random(name)
        for _ in range(rounds):
            chosen = chance.sample(keys, chance.randint(1, len(keys)))
            with transaction.atomic():
                mine.lock_or_create(TABLE, "key", rows(*chosen))
                for row in Limit.objects.filter(key__in=chosen):
                    row.concurrency_limit = (row.concurrency_limit or 0) + 1
                    row.save(update_fields=["concurrency_limit"])
            with tally:
                for key in chosen:
                    done[key] += 1

    run_threads(writer, 4)
    assert dict(Limit.objects.values_list("key", "concurrency_limit")) == done
