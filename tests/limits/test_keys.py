"""The key a limit counts under: given per call (``.using(concurrency_key="acct-7")``) or
worked out by a callable ``(args, kwargs) -> str``; stored on the run at enqueue, and held
per key by real workers (each key its own limit, the task's runs under other keys free)."""

from __future__ import annotations

import pytest

from taskmill.models import Run
from tests.limits.ledger import greatest_overlap
from tests.limits.runs import all_done, no_errors
from tests.testapp.limit_tasks import mail_one_per_domain, one_at_a_time, one_per_key

pytestmark = pytest.mark.django_db(transaction=True)
IN_A_TRANSACTION = pytest.mark.django_db(transaction=False)

SECONDS = 0.3  # long enough for runs under different keys to overlap, were they allowed to


def key_of(result) -> str | None:
    return Run.objects.values_list("concurrency_key", flat=True).get(pk=int(result.id))


@IN_A_TRANSACTION
def test_keys_given_per_call_or_by_a_callable_are_stored_on_the_run():
    path = one_at_a_time.module_path
    assert key_of(one_at_a_time.enqueue(key="-", name="task")) == path
    assert key_of(one_at_a_time.using(concurrency_key="acct-7").enqueue(key="-", name="-")) == (
        f"{path}:acct-7"
    )
    # Per call wins over the keyword argument the task names.
    named = one_per_key.using(concurrency_key="acct-7").enqueue(key="acct-8", name="-")
    assert key_of(named) == f"{one_per_key.module_path}:acct-7"
    # The per-call key is the call's: a copy made again keeps it, the task is untouched.
    again = one_at_a_time.using(concurrency_key="acct-7").using(priority=3)
    assert key_of(again.enqueue(key="-", name="-")) == f"{path}:acct-7"
    assert one_at_a_time.call_keys == ()
    # A callable: (args, kwargs) -> the key.
    mailed = mail_one_per_domain.enqueue(email="ann@a.example")
    assert key_of(mailed) == f"{mail_one_per_domain.module_path}:a.example"


def test_each_key_has_its_limit_and_other_keys_run_beside_it(start_worker, record_dir):
    for index in range(3):
        for account in ("acct-7", "acct-8"):
            one_at_a_time.using(concurrency_key=account).enqueue(
                key=account, name=f"{account}-{index}", seconds=SECONDS
            )
        one_at_a_time.enqueue(key="task", name=f"task-{index}", seconds=SECONDS)
        for domain in ("a.example", "b.example"):
            mail_one_per_domain.enqueue(email=f"user{index}@{domain}", seconds=SECONDS)
    start_worker("--concurrency", "8", "--poll-interval", "0.2", "--no-scheduler")
    all_done(60)
    overlap = greatest_overlap(record_dir)
    assert overlap == {"acct-7": 1, "acct-8": 1, "task": 1, "a.example": 1, "b.example": 1}
    # One limit per key, not per task: calls under other keys ran at the same time.
    accounts = greatest_overlap(record_dir, group=lambda key: key.partition("-")[0])
    domains = greatest_overlap(record_dir, group=lambda key: key.partition(".")[2])
    assert accounts["acct"] == 2 and domains["example"] == 2, (accounts, domains)
    no_errors()
