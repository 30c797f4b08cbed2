"""What ``taskmill status`` (its tables and --json) and the Prometheus metrics say of flow
control: held-back runs per queue, the limits in force and the slots in use, the keys that
hold back the most. Runs held by the real gate (tests/limits/holding.py)."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

import taskmill
from tests.testapp import tasks

from .holding import claim, hold_some

pytestmark = pytest.mark.django_db

ACCT_7 = "concurrency:tests.testapp.limit_tasks.sync_account:acct-7"
TWO = "concurrency:tests.testapp.limit_tasks.two_at_a_time"


def status(*args: str) -> str:
    out = io.StringIO()
    call_command("taskmill", "status", *args, stdout=out)
    return out.getvalue()


def test_status_has_a_held_column_and_the_limits_with_what_they_hold_back():
    hold_some()
    taskmill.set_queue_limits("emails", rate_limit="2/m")
    lines = status().splitlines()
    queues = lines[lines.index("Queues (6)") + 1 :]
    header = queues[0].split()
    assert header[4:6] == ["RUNNING", "HELD"]
    by_name = {line.split()[0]: line.split() for line in queues[1:7]}
    assert by_name["default"][4:6] == ["3", "3"]
    assert by_name["erp"][1:6] == ["1", "0", "0", "2", "0"]

    start = lines.index("Limits: queues limited or holding runs back (3)")
    assert lines[start + 1].split() == ["QUEUE", "LIMITS", "FROM", "IN", "USE", "HELD", "HELD",
                                        "BACK", "MOST", "BY"]  # fmt: skip
    limits = {line.split()[0]: line for line in lines[start + 2 : start + 5]}
    assert limits["default"].split()[1:5] == ["none", "-", "-", "3"]
    assert limits["default"].endswith(
        "acct-7 of sync_account (2 concurrency), two_at_a_time (1 concurrency)"
    )
    assert limits["emails"].split()[1:] == ["2/m", "set", "at", "run", "time", "0", "of", "2/m",
                                            "started", "0", "-"]  # fmt: skip
    assert limits["erp"].split()[1:] == ["2", "at", "once", "settings", "2", "of", "2", "in",
                                         "use", "(at", "its", "limit)", "0", "-"]  # fmt: skip


def test_status_json_carries_held_limits_in_use_and_the_top_keys():
    hold_some()
    taskmill.set_queue_limits("emails", concurrency_limit=4)
    queues = {queue["name"]: queue for queue in json.loads(status("--json"))["queues"]}
    default, erp, emails = queues["default"], queues["erp"], queues["emails"]
    assert (default["held"], default["in_use"], default["at_limit"]) == (3, 3, False)
    assert default["top_held_keys"] == [
        {"key": ACCT_7, "kind": "concurrency", "label": "acct-7 of sync_account", "held": 2},
        {"key": TWO, "kind": "concurrency", "label": "two_at_a_time", "held": 1},
    ]
    assert erp["limits"] == {
        "concurrency_limit": 2,
        "rate_limit": None,
        "set_at_run_time": False,
        "limits_set_at": None,
        "settings": {"concurrency_limit": 2, "rate_limit": None},
    }
    assert (erp["in_use"], erp["at_limit"], erp["held"], erp["top_held_keys"]) == (2, True, 0, [])
    assert emails["limits"]["concurrency_limit"] == 4
    assert emails["limits"]["set_at_run_time"] is True and emails["limits"]["limits_set_at"]
    assert emails["limits"]["settings"] == {"concurrency_limit": None, "rate_limit": None}


def test_metrics_count_held_runs_and_the_slots_of_limited_queues(client):
    hold_some()
    taskmill.set_queue_limits("emails", rate_limit="2/m")
    for number in range(3):
        tasks.send_email.enqueue(f"{number}@example.com")
    claim(queues=["emails"])
    text = client.get("/metrics/").content.decode()
    lines = set(text.splitlines())
    for expected in (
        'taskmill_queue_runs{queue="default",state="held"} 3',
        'taskmill_queue_runs{queue="erp",state="held"} 0',
        'taskmill_queue_concurrency_limit{queue="erp"} 2',
        'taskmill_queue_concurrency_in_use{queue="erp"} 2',
        'taskmill_queue_at_limit{queue="erp"} 1',
        'taskmill_queue_rate_limit_starts{queue="emails"} 2',
        'taskmill_queue_rate_limit_window_seconds{queue="emails"} 60',
        'taskmill_queue_rate_starts_in_window{queue="emails"} 2',
        'taskmill_queue_at_limit{queue="emails"} 1',
    ):
        assert expected in lines, expected
    # Only limited queues have limit samples.
    assert 'taskmill_queue_concurrency_limit{queue="default"}' not in text
    assert 'taskmill_queue_rate_limit_starts{queue="erp"}' not in text
    for name in ("taskmill_queue_concurrency_limit", "taskmill_queue_rate_starts_in_window"):
        assert f"# TYPE {name} gauge" in lines
