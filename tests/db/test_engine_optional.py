"""The contract's optional operations, the rollups and the operators' reads, through the engine
directly: notify and start_listener, cancel_query, lock_skipping_locked, json_array_holds,
add_stats, task_paths."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from taskmill.db import Engine, get_engine
from taskmill.db.stats import Ended
from taskmill.models import Run, RunStats, RunStatsHourly
from tests.conftest import held_by_another_transaction, wait_until

from .helpers import NOOP, insert, new_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_wakeups_reach_a_listener_or_are_not_offered(engine: Engine) -> None:
    heard: list[str] = []
    listener = engine.start_listener(heard.append)
    if not engine.pushes_wakeups:
        assert listener is None
        engine.notify("default")  # nothing to do, and nothing fails
        return
    assert listener is not None
    try:
        wait_until(lambda: "" in heard, message="the listener's first (re)connection wake-up")
        insert(engine, new_run(), wake={"emails"})
        wait_until(lambda: "emails" in heard, message=lambda: f"an insert's wake-up: {heard}")
        with transaction.atomic():
            engine.notify("high")
        wait_until(lambda: "high" in heard, message=lambda: f"a notify's wake-up: {heard}")
    finally:
        listener.stop()


def test_cancel_query_stops_another_threads_statement_where_it_can(engine: Engine) -> None:
    if engine.connection.vendor != "postgresql":
        engine.cancel_query(engine.connection)  # optional: nothing happens
        return
    started, outcome = threading.Event(), []

    def blocked() -> None:
        try:
            outcome.append(connections["default"])
            started.set()
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(60)")
            outcome.append("finished")
        except DatabaseError as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=blocked)
    thread.start()
    wait_until(started.is_set)
    wrapper = outcome[0]

    def sleeping() -> bool:
        with engine.connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
            )
            return cursor.fetchone()[0] > 0

    wait_until(sleeping, message="the other thread's statement")
    engine.cancel_query(wrapper)
    thread.join(20)
    assert not thread.is_alive()
    assert isinstance(outcome[-1], DatabaseError)


def test_lock_skipping_locked_passes_over_rows_others_hold(engine: Engine) -> None:
    ids = insert(engine, new_run(), new_run())
    query = Run.objects.order_by("pk")
    if not engine.skips_locked_rows:
        assert engine.lock_skipping_locked(query) is query
        return
    with (
        held_by_another_transaction(
            lambda: list(Run.objects.select_for_update().filter(pk=ids[0]))
        ),
        transaction.atomic(),
    ):
        picked = list(engine.lock_skipping_locked(query).values_list("pk", flat=True))
    assert picked == [ids[1]]


def test_add_stats_upserts_increments_per_minute_and_hour(engine: Engine) -> None:
    minute = timezone.now().replace(second=0, microsecond=0)
    ended = [
        Ended("default", NOOP, "SUCCESSFUL", minute + dt.timedelta(seconds=5), 0.004, 0.5),
        Ended("default", NOOP, "SUCCESSFUL", minute + dt.timedelta(seconds=9), 2.0, 0.1),
        Ended("default", NOOP, "FAILED", minute + dt.timedelta(seconds=9), 0.1, 0.1),
        Ended("emails", NOOP, "SUCCESSFUL", minute + dt.timedelta(minutes=1), 0.1, 0.1),
    ]
    with transaction.atomic():
        engine.add_stats(ended)
    with transaction.atomic():
        engine.add_stats(ended[:1])  # the same row again: added to, not replaced
        engine.add_stats([])
    row = RunStats.objects.get(minute=minute, queue_name="default", status="SUCCESSFUL")
    assert row.count == 3
    assert row.duration_sum == pytest.approx(2.008) and row.latency_sum == pytest.approx(1.1)
    assert sum(row.durations()) == 3 == sum(row.latencies())
    assert RunStats.objects.count() == 3
    hours = {
        (r.queue_name, r.status): r.count
        for r in RunStatsHourly.objects.filter(hour=minute.replace(minute=0))
    }
    expected = {("default", "SUCCESSFUL"): 3, ("default", "FAILED"): 1, ("emails", "SUCCESSFUL"): 1}
    if minute.minute == 59:  # the last one falls into the next hour
        expected.pop(("emails", "SUCCESSFUL"))
    assert hours == expected


def test_the_rollups_roll_back_with_the_callers_transaction(engine: Engine) -> None:
    ended = Ended("default", NOOP, "SUCCESSFUL", timezone.now(), 0.1, 0.1)
    with pytest.raises(RuntimeError), transaction.atomic():
        engine.add_stats([ended])
        raise RuntimeError("rolled back")
    assert not RunStats.objects.exists() and not RunStatsHourly.objects.exists()


def test_every_thread_gets_an_engine_of_its_own_connection(engine: Engine) -> None:
    seen = []

    def other() -> None:
        try:
            seen.append(get_engine("default").connection)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(10)
    assert seen and seen[0] is not engine.connection


def test_json_array_holds_finds_an_element_as_a_number_or_as_text(engine: Engine) -> None:
    text, number, neither, _nested = insert(
        engine,
        new_run(args=["home", "articlepage", "5"]),
        new_run(args=[1, 5]),
        new_run(args=["55", 15, "x5"]),
        new_run(args=[["5"], {"id": 5}]),
    )
    runs = Run.objects.order_by("pk")

    def found(*values: object) -> list[int]:
        matching = runs.filter(engine.json_array_holds("args", values))
        return list(matching.values_list("pk", flat=True))

    # MariaDB's JSON comparisons are loose (5 equals "5", inside nested arrays too): it
    # finds more, never less.
    loose = getattr(engine.connection, "mysql_is_mariadb", False)
    assert {text, number} <= set(found(5, "5"))
    assert neither not in found(5, "5")
    assert found("home") == [text]
    assert found(6, "6") == []
    if not loose:
        assert found(5, "5") == [text, number]  # not inside a nested array or object
        assert found("5") == [text]
        assert found(5) == [number]


def test_task_paths_are_read_once_each_in_order_from_a_point(engine: Engine) -> None:
    assert engine.task_paths(None, 10) == []
    paths = ["app.b.two", "app.a.one", "app.c.three", "app.a.one", "app.b.two", "app.a.one"]
    insert(engine, *(new_run(task_path=path) for path in paths))
    assert engine.task_paths(None, 10) == ["app.a.one", "app.b.two", "app.c.three"]
    assert engine.task_paths(None, 2) == ["app.a.one", "app.b.two"]
    assert engine.task_paths("app.a.one", 10) == ["app.b.two", "app.c.three"]
    assert engine.task_paths("app.b", 1) == ["app.b.two"]  # above, not only after a stored one
    assert engine.task_paths("app.c.three", 10) == []
