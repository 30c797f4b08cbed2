"""Flow control in a real browser, on the demo at work: a queue limited to two at once and an
account synced one at a time (demo.tasks.sync_partner_account). The Queues page shows the
limit, the slots in use and the keys holding runs back; a held run's page says why; the
limit is changed from its form and reset to the settings. At 1280 pixels wide, a common
laptop's, with no sideways scroll."""

from __future__ import annotations

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .demo import DemoProject
from .helpers import Screenshot, element, no_sideways_scroll, open_page, refresh_until, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

WORKER_DEADLINE = 180.0
# Long enough to read the pages while they run; short enough for the demo to stop (its
# worker waits for running tasks, 15 s at most) and to leave it idle for the next test.
SECONDS = 12
# Queued in this order: acct-7's first and acct-9's first take the queue's two slots,
# acct-7's others wait for the account's slot, acct-8's for the queue's.
ENQUEUE = f"""
from demo.tasks import sync_partner_account as sync
calls = [((), {{"account": account, "seconds": {SECONDS}}})
         for account in ["acct-7"] * 4 + ["acct-9"] * 2 + ["acct-8"]]
sync.enqueue_many(calls)
"""
CANCEL_READY = """
from taskmill import control
from taskmill.models import Run
for run in Run.objects.filter(queue_name="partners", status="READY"):
    control.cancel(run.pk)
"""


def test_the_queues_page_and_a_held_runs_page_say_what_is_held_and_why(
    laptop_width: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    browser, base = laptop_width, demo.base_url
    demo.manage("shell", "-c", ENQUEUE)
    try:
        queues = f"{base}/admin/taskmill/queue/"

        def partners_row(b: Chrome):
            for row in b.find_elements(By.CSS_SELECTOR, "#result_list tbody tr"):
                if row.find_element(By.CSS_SELECTOR, ".field-name").text == "partners":
                    return row
            return None

        row = refresh_until(
            browser,
            queues,
            lambda b: (
                (row := partners_row(b))
                and "acct-7" in row.find_element(By.CSS_SELECTOR, ".field-held_back").text
                and "2 of 2 in use" in row.text
                and row
            ),
            WORKER_DEADLINE,
            message="the partners queue full, with acct-7's runs held back",
        )
        limits = row.find_element(By.CSS_SELECTOR, ".field-limits_changeable").text
        assert limits.splitlines()[0] == "2 at once"
        assert "settings" in limits
        held = row.find_element(By.CSS_SELECTOR, ".field-held_back").text.splitlines()
        assert int(held[0]) >= 1 and held[1].startswith("acct-7 ")
        no_sideways_scroll(browser)
        screenshot("queues-with-a-limited-queue", show=row)

        # A run of acct-7 held back: its page says why, next to its status.
        [(held_id,)] = demo.query(
            "SELECT min(id) FROM taskmill_run WHERE status = 'READY' AND held_by LIKE ?",
            "concurrency:%:acct-7",
        )
        assert held_id is not None
        open_page(browser, f"{base}/admin/taskmill/run/{held_id}/change/", "task run")
        reason = element(browser, ".field-held_back .tm-held-reason").text
        assert reason == "waiting for a slot: concurrency key acct-7 (1 of 1 in use)"
        no_sideways_scroll(browser)
        screenshot("a-held-run", show=element(browser, ".field-status"))

        # The key's link lists the runs it holds back.
        open_page(browser, queues, "queue")
        link = wait_for(browser, lambda b: (r := partners_row(b)) and r.find_element(
            By.LINK_TEXT, "acct-7"))  # fmt: skip
        link.click()
        wait_for(browser, lambda b: "held_by=" in b.current_url)
        listed = {cell.text for cell in browser.find_elements(By.CSS_SELECTOR, ".field-id")}
        assert str(held_id) in listed or not listed  # let go meanwhile: the list may be empty

        # Raise the queue's limit from its form; then back to the settings.
        open_page(browser, queues, "queue")
        wait_for(browser, partners_row).find_element(By.CSS_SELECTOR, "a.tm-change-limits").click()
        wait_for(browser, lambda b: "Limits of the queue partners" in b.title)
        field = element(browser, "#id_concurrency_limit")
        field.clear()
        field.send_keys("0")
        element(browser, "input[type=submit].default").click()
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".errorlist"))
        assert "at least 1" in element(browser, ".errorlist").text
        no_sideways_scroll(browser)
        screenshot("limits-form-with-an-error")
        field = element(browser, "#id_concurrency_limit")
        field.clear()
        field.send_keys("3")
        element(browser, "input[type=submit].default").click()
        wait_for(browser, lambda b: "Limits set: 3 at once" in b.find_element(
            By.CSS_SELECTOR, ".messagelist").text)  # fmt: skip
        assert demo.query(
            "SELECT concurrency_limit FROM taskmill_queue WHERE name = 'partners'"
        ) == [(3,)]
        screenshot("limit-raised", show=partners_row(browser))

        partners_row(browser).find_element(By.CSS_SELECTOR, "a.tm-change-limits").click()
        element(browser, "input[name=_reset]").click()
        wait_for(browser, lambda b: "Limits reset to the settings: 2 at once" in b.find_element(
            By.CSS_SELECTOR, ".messagelist").text)  # fmt: skip
        assert demo.query("SELECT limits_set_at FROM taskmill_queue WHERE name = 'partners'") == [
            (None,)
        ]
    finally:
        # Leave the demo as it was for the next test: nothing of this test waiting.
        demo.manage("shell", "-c", CANCEL_READY)
