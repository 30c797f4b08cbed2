"""Flow control in the control room: what the Queues page, a held run's page and the dashboard
show of the limits and what they hold back (runs held by the real gate), and the form that
changes a queue's limits at run time, for who holds taskmill.change_queue_limits only."""

from __future__ import annotations

import html as markup
import re
from urllib.parse import quote

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User

from taskmill.models import Queue, Run, RunStatus
from tests.limits.holding import claim, held, hold_some

pytestmark = pytest.mark.django_db

QUEUES = "/admin/taskmill/queue/"
ERP_LIMITS = "/admin/taskmill/queue/erp/limits/"
ACCT_7 = "concurrency:tests.testapp.limit_tasks.sync_account:acct-7"


def user_with(*codenames: str) -> User:
    user = User.objects.create(username="-".join(codenames) or "staff", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="taskmill", codename__in=codenames)
    )
    return user


def text(fragment: str) -> str:
    return " ".join(markup.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def rows(page: str) -> dict[str, dict[str, str]]:
    """The change list's rows by their first cell: each column's text by its field name."""
    found = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
        cells = re.findall(r'<t[dh] class="field-(\w+)[^"]*"[^>]*>(.*?)</t[dh]>', row, re.S)
        if cells:
            values = {name: text(cell) for name, cell in cells}
            found[values[cells[0][0]]] = values | {"_html": row}
    return found


def test_the_queues_page_shows_limits_slots_in_use_what_is_held_and_by_which_keys(admin_client):
    hold_some()
    shown = rows(admin_client.get(QUEUES).content.decode())
    erp, default = shown["erp"], shown["default"]
    assert (erp["running"], erp["held_back"]) == ("2", "0")
    assert erp["limits_changeable"] == "2 at once 2 of 2 in use at its limit settings change"
    assert (default["running"], default["limits_changeable"]) == ("3", "— change")
    # The count, then the keys that hold back the most.
    assert default["held_back"] == "3 acct-7 2 concurrency two_at_a_time 1 concurrency"
    assert f'title="{ACCT_7}: acct-7 of sync_account"' in default["_html"]
    # Each key leads to the runs it holds back.
    link = f"/admin/taskmill/run/?status=READY&amp;held_by={quote(ACCT_7, safe='')}"
    assert f'href="{link}"' in default["_html"]
    listed = admin_client.get(markup.unescape(link)).content.decode()
    acct = Run.objects.filter(held_by=ACCT_7).values_list("pk", flat=True)
    assert set(re.findall(r"/admin/taskmill/run/(\d+)/change/", listed)) == {str(pk) for pk in acct}


def test_a_held_runs_page_says_why_next_to_its_status(admin_client):
    ids = hold_some()
    first, second, _ = ids["acct-7"]
    page = admin_client.get(f"/admin/taskmill/run/{second}/change/").content.decode()
    after_status = page[page.index("field-status") :]
    assert after_status.index("field-held_back") < after_status.index("field-queue_name")
    reason = re.search(r'class="tm-held-reason">(.*?)</span>', page, re.S).group(1)
    assert reason == "waiting for a slot: concurrency key acct-7 (1 of 1 in use)"
    # A running run, or a finished one, has nothing to say there.
    assert "field-held_back" not in admin_client.get(f"/admin/taskmill/run/{first}/change/").text
    erp_waiting = Run.objects.get(pk__in=ids["erp"], status=RunStatus.READY)
    page = admin_client.get(f"/admin/taskmill/run/{erp_waiting.pk}/change/").content.decode()
    assert "queue erp at its limit (2 of 2 in use)" in page


def test_the_dashboard_shows_what_each_queue_holds_back(admin_client):
    hold_some()
    page = admin_client.get("/admin/taskmill/dashboard/?fragment=queues").content.decode()
    head = re.search(r"<thead>(.*?)</thead>", page, re.S).group(1)
    headers = re.findall(r"<th[^>]*>(.*?)</th>", head)
    cells = {
        text(row[0]): [text(cell) for cell in row]
        for row in (re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S) for tr in page.split("<tr>"))
        if row
    }
    held_column = headers.index("held back")
    assert headers[held_column - 1] == "running"
    assert cells["default"][held_column] == "3" and cells["erp"][held_column] == "0"
    assert "held_by__isnull=False" in page  # the count leads to the runs it counts


def test_who_may_change_limits_sets_them_for_every_worker_and_it_is_logged(client):
    hold_some()  # erp full: two running, one due and passed over
    operator = user_with("view_queue", "change_queue_limits")
    client.force_login(operator)
    assert "tm-change-limits" in client.get(QUEUES).content.decode()
    form = client.get(ERP_LIMITS).content.decode()
    assert 'name="concurrency_limit" value="2"' in form and "Reset to the settings" in form

    response = client.post(ERP_LIMITS, {"concurrency_limit": "3", "rate_limit": " 10 / m "})
    assert response.status_code == 302 and response["Location"] == QUEUES
    row = Queue.objects.get(pk="erp")
    assert (row.concurrency_limit, row.rate_limit) == (3, "10/m")
    assert row.limits_set_at is not None
    assert not row.at_limit  # a slot more: claims take the queue's runs again at once
    entry = LogEntry.objects.get(user=operator, object_id="erp")
    assert entry.change_message == "Limits set: 3 at once, 10/m (were 2 at once, from the settings)"
    listed = rows(client.get(QUEUES).content.decode())["erp"]["limits_changeable"]
    assert listed == "3 at once, 10/m 2 of 3 in use, 0 of 10/m started set at run time change"

    response = client.post(ERP_LIMITS, {"_reset": "Reset", "concurrency_limit": "junk"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.limits_set_at, row.concurrency_limit, row.rate_limit) == (None, None, None)
    assert LogEntry.objects.filter(user=operator).latest("pk").change_message == (
        "Limits reset to the settings: 2 at once (were 3 at once, 10/m, set at run time)"
    )


def test_without_the_permission_there_is_no_form_and_a_post_is_refused(client):
    hold_some()
    viewer = user_with("view_queue", "view_run")
    client.force_login(viewer)
    assert "tm-change-limits" not in client.get(QUEUES).content.decode()
    assert "tm-change-limits" not in client.get("/admin/taskmill/queue/erp/change/").text
    assert client.get(ERP_LIMITS).status_code == 403
    assert client.post(ERP_LIMITS, {"concurrency_limit": "9"}).status_code == 403
    assert client.post(ERP_LIMITS, {"_reset": "Reset"}).status_code == 403
    # The permission alone, without seeing the queues, is not enough either.
    client.force_login(user_with("change_queue_limits"))
    assert client.post(ERP_LIMITS, {"concurrency_limit": "9"}).status_code == 403
    assert Queue.objects.get(pk="erp").limits_set_at is None
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"concurrency_limit": "2", "rate_limit": "abc"},
            '"abc" is not a rate: write starts per window, such as "100/m", "10/s" or "5/30s"',
        ),
        ({"concurrency_limit": "0", "rate_limit": ""}, "A concurrency limit is at least 1"),
        ({"concurrency_limit": "two", "rate_limit": ""}, "A concurrency limit is a whole number"),
        ({"concurrency_limit": "", "rate_limit": "0/m"}, '"0/m" is not a rate'),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(admin_client, data, error):
    response = admin_client.post(ERP_LIMITS, data)
    assert response.status_code == 200
    page = markup.unescape(response.content.decode())
    assert "nothing was changed" in page and error in page
    assert not Queue.objects.filter(pk="erp").exclude(limits_set_at=None).exists()
    assert not LogEntry.objects.exists()


def test_an_unknown_queue_has_no_limits_page(admin_client):
    assert admin_client.get("/admin/taskmill/queue/nope/limits/").status_code == 404
    assert not Queue.objects.filter(pk="nope").exists()


def test_limits_removed_at_run_time_say_so(admin_client):
    admin_client.post(ERP_LIMITS, {"concurrency_limit": "", "rate_limit": ""})
    assert Queue.objects.get(pk="erp").limits_set_at is not None
    shown = rows(admin_client.get(QUEUES).content.decode())["erp"]["limits_changeable"]
    assert shown == "none set at run time change"
    # With the queue's limit gone, its runs are no longer passed over.
    from tests.testapp.limit_tasks import call_erp

    ids = [int(call_erp.enqueue(index).id) for index in range(3)]
    claim()
    assert held(ids) == [] and not Run.objects.filter(pk__in=ids, status="READY").exists()
