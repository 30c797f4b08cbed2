"""Tasks with limits, for tests/limits/: each records its start and end in the test's
record directory (a ledger read back to measure overlaps and rates)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import taskmill


def _record(kind: str, key: str) -> None:
    directory = os.environ.get("TASKMILL_TEST_RECORD_DIR")
    if not directory:
        return
    line = f"{kind} {key} {time.time():.6f}\n"
    with open(Path(directory) / f"limits-{os.getpid()}.log", "a") as ledger:
        ledger.write(line)


def _work(key: str, seconds: float) -> str:
    _record("start", key)
    time.sleep(seconds)
    _record("end", key)
    return key


@taskmill.task(concurrency_limit=1, concurrency_key="account")
def sync_account(*, account: str, seconds: float = 0.05) -> str:
    return _work(account, seconds)


@taskmill.task(concurrency_limit=2)
def two_at_a_time(index: int, seconds: float = 0.05) -> str:
    return _work("two", seconds)


@taskmill.task(queue_name="erp")
def call_erp(index: int, seconds: float = 0.05) -> str:
    return _work("erp", seconds)


@taskmill.task(rate_limit="10/2s")
def call_partner(index: int) -> str:
    return _work("partner", 0.0)


@taskmill.task(rate_limit="30/10s")
def call_partner_slowly(index: int) -> str:
    return _work("partner", 0.0)


@taskmill.task(fair_key="tenant")
def tenant_job(*, tenant: str, index: int = 0, seconds: float = 0.0) -> str:
    return _work(tenant, seconds)


@taskmill.task(rate_limit="2/m", rate_key="account")
def call_partner_for(*, account: str) -> str:
    return _work(account, 0.0)
