"""The fault suite's hooks: the soak's table goes to the end of the test run's output."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .test_soak import SOAK_TABLES

    for table in SOAK_TABLES:
        terminalreporter.section("chaos soak")
        terminalreporter.write_line(table)
