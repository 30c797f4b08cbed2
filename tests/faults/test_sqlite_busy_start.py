"""A worker starting while another process holds SQLite's write lock past the timeout.

Django's system checks ask whether SQLite has JSON inside a transaction; with
``transaction_mode: IMMEDIATE`` that transaction waits for the write lock, and a busy database
then reads as "SQLite does not support JSONFields" (fields.E180), which stopped the worker with
a misleading error. taskmill's start-up answers the question without the write lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from taskmill.db import answer_start_up_probes
from tests.conftest import only_on

pytestmark = [
    only_on("sqlite", "the JSON probe and its write lock are SQLite's"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def impatient() -> Iterator[BaseDatabaseWrapper]:
    """A new connection to the test database that gives up on a lock after 0.2 s.

    Registered under its alias: Django's probe opens its transaction by alias.
    """
    settings = {**connection.settings_dict}
    settings["OPTIONS"] = {**settings["OPTIONS"], "timeout": 0.2}
    wrapper_class = type(connections[connection.alias])
    connections["impatient"] = probed = wrapper_class(settings, alias="impatient")
    try:
        yield probed
    finally:
        probed.close()
        del connections["impatient"]


@pytest.fixture
def write_lock_held() -> Iterator[None]:
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_djangos_own_probe_misreads_a_busy_database(
    impatient: BaseDatabaseWrapper, write_lock_held: None
) -> None:
    # The failure this guards against: if Django stops misreading, the probe can go.
    assert impatient.features.supports_json_field is False


def test_the_start_up_probe_answers_without_the_write_lock(
    impatient: BaseDatabaseWrapper, write_lock_held: None
) -> None:
    answer_start_up_probes(impatient)
    assert impatient.features.supports_json_field is True
