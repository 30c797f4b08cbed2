"""The contract suite runs against the engine of whichever database the tests run on
(TASKMILL_TEST_DB), as River runs one driver suite against every driver."""

from __future__ import annotations

import pytest
from django.db import connection

from taskmill.db import Engine, get_engine


@pytest.fixture
def engine(transactional_db: None) -> Engine:
    return get_engine(connection.alias)
