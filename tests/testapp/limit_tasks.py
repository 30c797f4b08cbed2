"""Tasks with limits, for tests/limits/: each records its start and end in the test's
record directory (a ledger read back to measure overlaps and rates)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import taskmill


def _record(kind: str, key: str, name: str = "") -> None:
    directory = os.environ.get("TASKMILL_TEST_RECORD_DIR")
    if not directory:
        return
    line = f"{kind} {key} {time.time():.6f} {name}".rstrip() + "\n"
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


@taskmill.task(rate_limit="10/2s")
async def call_partner_async(index: int) -> str:
    """On the worker's event loop: its start is written from a thread (tests/limits/
    test_rate_starts.py)."""
    return _work("partner", 0.0)


@taskmill.task(fair_key="tenant")
def tenant_job(*, tenant: str, index: int = 0, seconds: float = 0.0) -> str:
    return _work(tenant, seconds)


# -- gated runs: tests/limits/test_holding.py and the tests beside it --------------------------
# Each attempt records its start and end under ``key`` (the ledger's group) as ``name.attempt``;
# a first attempt given ``gate`` waits for that file (a test releases it, or kills the worker),
# so a test decides when a slot frees.


def _gated(context, key: str, name: str, gate: str, seconds: float, fail_first: bool) -> str:
    label = f"{name}.{context.attempt}"
    _record("start", key, label)
    try:
        if gate and context.attempt == 1:
            deadline = time.monotonic() + 120
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
        time.sleep(seconds)
        if fail_first and context.attempt == 1:
            raise RuntimeError(f"{label} fails on purpose")
    finally:
        _record("end", key, label)
    return label


@taskmill.task(concurrency_limit=1, concurrency_key="key", takes_context=True)
def one_per_key(context, *, key: str, name: str, gate: str = "", seconds: float = 0.0) -> str:
    return _gated(context, key, name, gate, seconds, False)


@taskmill.task(concurrency_limit=2, takes_context=True)
def two_gated(context, *, key: str, name: str, gate: str = "", seconds: float = 0.0) -> str:
    return _gated(context, key, name, gate, seconds, False)


@taskmill.task(concurrency_limit=1, takes_context=True)
def one_at_a_time(context, *, key: str, name: str, seconds: float = 0.0) -> str:
    """Limited per task, or per call with ``.using(concurrency_key=...)``."""
    return _gated(context, key, name, "", seconds, False)


def quick_backoff(exception: BaseException, task_result: object) -> float:
    return 0.2


@taskmill.task(concurrency_limit=2, max_attempts=3, backoff=quick_backoff, takes_context=True)
def two_failing_once(context, *, key: str, name: str, seconds: float = 0.0) -> str:
    return _gated(context, key, name, "", seconds, True)


def email_domain(args: object, kwargs: dict) -> str:
    return kwargs["email"].rpartition("@")[2]


@taskmill.task(concurrency_limit=1, concurrency_key=email_domain, takes_context=True)
def mail_one_per_domain(context, *, email: str, seconds: float = 0.0) -> str:
    return _gated(context, email_domain((), {"email": email}), email, "", seconds, False)


@taskmill.task(takes_context=True)
def unlimited(context, *, key: str, name: str, gate: str = "", seconds: float = 0.0) -> str:
    """No limit of its own: with ``.using(queue_name="erp")``, its queue's."""
    return _gated(context, key, name, gate, seconds, False)


@taskmill.task(concurrency_limit=1, concurrency_key="region")
def regional(region: str = "eu") -> str:
    """Its key is the keyword argument ``region``: a call must pass it by name."""
    return region


@taskmill.task(rate_limit="2/m", rate_key="account")
def call_partner_for(*, account: str) -> str:
    return _work(account, 0.0)
