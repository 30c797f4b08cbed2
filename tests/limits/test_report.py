"""taskmill.limits.report: why a run is held back, and each queue's limits and what they hold
back, read from runs the real gate held back (tests/limits/holding.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import taskmill
from taskmill.limits.report import (
    TOP_KEYS,
    key_label,
    queue_reports,
    short_key_label,
    why_held,
)
from taskmill.models import Queue, Run, RunStatus
from tests.testapp import tasks
from tests.testapp.limit_tasks import call_partner, call_partner_for, sync_account

from .holding import claim, held, hold_fairly, hold_some

pytestmark = pytest.mark.django_db


def reason(run_id: int) -> str | None:
    return why_held(Run.objects.get(pk=run_id))


def test_a_run_held_by_a_concurrency_key_waits_for_its_keys_slot():
    ids = hold_some()
    first, *rest = ids["acct-7"]
    assert held(ids["acct-7"]) == rest
    for run_id in rest:
        assert reason(run_id) == "waiting for a slot: concurrency key acct-7 (1 of 1 in use)"
    assert reason(first) is None  # running


def test_a_run_held_by_a_task_wide_limit_names_the_task():
    ids = hold_some()
    [waiting] = held(ids["two"])
    assert reason(waiting) == (
        "waiting for a slot: concurrency limit of tests.testapp.limit_tasks.two_at_a_time "
        "(2 of 2 in use)"
    )


def test_a_due_run_of_a_full_queue_waits_for_the_queue():
    ids = hold_some()
    statuses = dict(Run.objects.filter(pk__in=ids["erp"]).values_list("pk", "status"))
    [handed_back] = [pk for pk, status in statuses.items() if status == RunStatus.READY]
    assert Queue.objects.get(pk="erp").at_limit
    assert reason(handed_back) == "queue erp at its limit (2 of 2 in use)"
    # A slot frees (the row says so once a gate has seen it): nothing holds it back.
    Queue.objects.filter(pk="erp").update(at_limit=False)
    assert reason(handed_back) is None


def test_a_run_held_by_a_rate_says_when_the_next_start_comes():
    ids = [int(call_partner.enqueue(index).id) for index in range(12)]  # "10/2s"
    claim()
    waiting = held(ids)
    assert len(waiting) == 2
    said = reason(waiting[0])
    match = re.fullmatch(
        r"rate limit of tests\.testapp\.limit_tasks\.call_partner \(10/2s\): next start in (\d) s",
        said or "",
    )
    assert match, said
    assert 1 <= int(match.group(1)) <= 3  # the window, 2 s and its margin, from the claim


def test_a_run_held_by_a_rate_key_names_the_key():
    ids = [int(call_partner_for.enqueue(account="acct-9").id) for _ in range(3)]  # "2/m"
    claim()
    [waiting] = held(ids)
    assert re.fullmatch(
        r"rate limit of key acct-9 \(2/m\): next start in (6[01]) s", reason(waiting) or ""
    )


def test_a_run_held_by_a_fair_share_takes_turns():
    ids = hold_fairly("A", runs=12)
    waiting = held(ids)
    assert len(waiting) == 3  # 12, one claimed, FAIR_WINDOW (8) due, the rest held back
    said = "taking turns with other keys: fair key A (3 of its runs held back)"
    assert reason(waiting[0]) == said


def test_runs_no_limit_holds_back_have_no_reason():
    now = timezone.now()
    plain = int(tasks.noop.enqueue().id)
    later = int(tasks.noop.using(run_after=now + timedelta(hours=1)).enqueue().id)
    assert reason(plain) is None
    assert reason(later) is None
    hold_some()  # a full queue holds only its own runs
    assert reason(plain) is None


def test_each_queue_reports_its_limits_what_is_in_use_and_what_is_held():
    hold_some()
    reports = queue_reports()
    erp = reports["erp"]
    assert (erp.concurrency_limit, erp.rate_limit, erp.set_at_run_time) == (2, None, False)
    assert (erp.in_use, erp.held, erp.at_limit, erp.top_held_keys) == (2, 0, True, [])
    assert erp.settings == {"concurrency_limit": 2, "rate_limit": None}
    default = reports["default"]
    assert not default.limited and default.held == 3 and default.in_use == 3
    assert [(key.key, key.kind, key.label, key.held) for key in default.top_held_keys] == [
        (
            "concurrency:tests.testapp.limit_tasks.sync_account:acct-7",
            "concurrency",
            "acct-7 of sync_account",
            2,
        ),
        (
            "concurrency:tests.testapp.limit_tasks.two_at_a_time",
            "concurrency",
            "two_at_a_time",
            1,
        ),
    ]
    assert reports["emails"].held == 0 and not reports["emails"].limited


def test_limits_set_at_run_time_win_over_the_settings_and_a_rate_counts_its_starts():
    taskmill.set_queue_limits("erp", concurrency_limit=5, rate_limit="2/m")
    taskmill.set_queue_limits("emails", rate_limit="2/m")
    ids = [int(tasks.send_email.enqueue(f"{n}@example.com").id) for n in range(3)]
    claim(queues=["emails"])
    reports = queue_reports()
    erp = reports["erp"]
    assert (erp.concurrency_limit, erp.rate_limit, erp.set_at_run_time) == (5, "2/m", True)
    assert erp.settings == {"concurrency_limit": 2, "rate_limit": None}
    assert erp.limits_set_at is not None and erp.started_in_window == 0
    emails = reports["emails"]
    assert (emails.rate_limit, emails.started_in_window, emails.at_limit) == ("2/m", 2, True)
    [waiting] = Run.objects.filter(pk__in=ids, status=RunStatus.READY).values_list("pk", flat=True)
    assert re.fullmatch(
        r"queue emails at its rate limit \(2/m\): next start in (6[01]) s", reason(waiting) or ""
    )
    taskmill.set_queue_limits("erp", reset=True)
    erp = queue_reports()["erp"]
    assert (erp.concurrency_limit, erp.rate_limit, erp.set_at_run_time) == (2, None, False)


def test_the_keys_holding_back_most_come_first_and_no_more_than_five():
    # acct-1 holds back one run, acct-6 six: one of each runs.
    for number in range(1, 7):
        for _ in range(number + 1):
            sync_account.enqueue(account=f"acct-{number}")
    claim()
    keys = queue_reports()["default"].top_held_keys
    assert len(keys) == TOP_KEYS == 5
    assert [(key.label, key.held) for key in keys] == [
        (f"acct-{number} of sync_account", number) for number in (6, 5, 4, 3, 2)
    ]


def test_a_report_costs_the_same_for_one_queue_or_many():
    hold_some()
    taskmill.set_queue_limits("emails", rate_limit="2/m")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            queue_reports()
        return len(captured.captured_queries)

    few = queries()
    for number in range(20):
        taskmill.set_queue_limits(f"limited-{number}", concurrency_limit=1, rate_limit="1/s")
        sync_account.using(queue_name="default").enqueue(account=f"more-{number}")
    assert queries() == few


def test_key_labels():
    assert key_label("concurrency:app.tasks.sync:acct-7") == "acct-7 of sync"
    assert key_label("rate:app.tasks.call") == "call"
    assert key_label("fair:default:tenant:42") == "tenant:42"
    assert short_key_label("concurrency:app.tasks.sync:head of sales") == "head of sales"
    assert short_key_label("rate:app.tasks.call") == "call"
    assert short_key_label("fair:default:A") == "A"
