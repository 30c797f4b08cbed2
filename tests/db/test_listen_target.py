"""Where a PostgreSQL worker LISTENs (taskmill/db/listen_target.py), with a real PgBouncer in
transaction mode in front of the test's server: its notifications never arrive through the
pooler, so the listener goes to the server itself, or LISTEN_DATABASE's alias, or polls."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.db import connection, connections

from taskmill.db import listen_target
from taskmill.db.listen_target import ListenTarget, Unreachable, delivers, psycopg_params
from taskmill.models import Run, RunStatus
from tests.conftest import only_on, wait_until
from tests.testapp import tasks

from .pgbouncer import direct_port, free_port, pgbouncer  # noqa: F401 (a fixture)

pytestmark = [
    only_on("postgresql", "LISTEN/NOTIFY is PostgreSQL's"),
    pytest.mark.django_db(transaction=True),
]


def direct_params() -> dict:
    """PostgreSQL itself (in the suite through a PgBouncer, the connection's is the pooler)."""
    params = psycopg_params(connection.get_connection_params())
    if int(params.get("port") or 5432) != direct_port():
        params["port"] = direct_port()
    return params


@pytest.fixture
def pooled(pgbouncer: int) -> Iterator[str]:  # noqa: F811
    """A DATABASES alias for the test's database through the pooler."""
    connections.settings["pooled"] = {**connection.settings_dict, "PORT": str(pgbouncer)}
    yield "pooled"
    connections["pooled"].close()
    del connections["pooled"]  # the next test's pooler has another port
    del connections.settings["pooled"]


def test_a_direct_connection_delivers_and_is_the_target():
    assert delivers(direct_params())
    chosen = ListenTarget("default").params()
    assert chosen is not None and delivers(chosen)
    if direct_params() == psycopg_params(connection.get_connection_params()):
        assert chosen == direct_params()  # the connection as configured, not a guess
    else:  # the suite through a PgBouncer: the server itself, found by the listener
        assert int(chosen["port"]) == direct_port()


def test_behind_a_transaction_pooler_the_listener_goes_to_the_server_itself(pooled, caplog):
    through = psycopg_params(connections[pooled].get_connection_params())
    assert not delivers(through)  # the pooler swallows the notification
    with caplog.at_level(logging.INFO, logger="taskmill.worker"):
        chosen = ListenTarget(pooled).params()
    assert chosen is not None and delivers(chosen)
    assert chosen["port"] == direct_port()
    assert "did not deliver NOTIFY" in caplog.text
    # LISTEN_DATABASE, when given, is the target as it is.
    given = ListenTarget(pooled, listen_database="default").params()
    assert given == psycopg_params(connection.get_connection_params())


def test_a_database_not_reachable_yet_is_decided_again_later():
    connections.settings["nowhere"] = {**connection.settings_dict, "PORT": str(free_port())}
    try:
        target = ListenTarget("nowhere")
        for _ in range(2):  # not cached: the listener asks again after its back-off
            with pytest.raises(Unreachable):
                target.params()
    finally:
        del connections["nowhere"]
        del connections.settings["nowhere"]


def test_when_nothing_delivers_the_worker_polls_and_says_so(pooled, caplog, monkeypatch):
    # The one path a single machine cannot stage for real: a server the pooler reaches and
    # the worker cannot. Its answer about itself names a port where nothing listens.
    closed = free_port()
    monkeypatch.setattr(listen_target, "server_address", lambda params: ("127.0.0.1", closed))
    with caplog.at_level(logging.WARNING, logger="taskmill.worker"):
        assert ListenTarget(pooled).params() is None
    assert "polls for new runs" in caplog.text and "LISTEN_DATABASE" in caplog.text


def test_a_worker_behind_the_pooler_is_woken_by_notify(pgbouncer, start_worker):  # noqa: F811
    worker = start_worker(
        "--no-scheduler", "--poll-interval", "30", "-v", "2",
        # Not the PgBouncer suite's LISTEN_DATABASE (tests/settings.py): found by itself.
        env={"TASKMILL_PG_PORT": str(pgbouncer), "TASKMILL_TEST_PGBOUNCER": ""},
    )  # fmt: skip
    worker.wait_for_output("wake-ups come over a direct connection to the server", timeout=60)
    worker.wait_for_output("Listening for NOTIFY", timeout=30)
    result = tasks.add.enqueue(2, 3)  # committed here, NOTIFY sent by the server
    worker.wait_for_output("NOTIFY received for queue 'default'", timeout=30)
    wait_until(
        lambda: Run.objects.get(pk=int(result.id)).status == RunStatus.SUCCESSFUL,
        30,
        message="the run the NOTIFY announced",
    )
