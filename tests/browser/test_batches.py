"""A batch in a real browser, on the demo at work: its progress bar moves on the dashboard as
its members end (the dashboard refreshes itself, nothing reloads the page), and its page
shows its counts, its members and its callback's run once it finished."""

from __future__ import annotations

import re

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from .demo import DemoProject
from .helpers import Screenshot, element, open_page, refresh_until, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

WORKER_DEADLINE = 180.0
MEMBERS = 12
# Members of the demo's limited queue (two at once), a second and a half each: about nine
# seconds for the batch, so the dashboard's 5-second refresh sees it move.
ENQUEUE = f"""
import taskmill
from demo.tasks import catalogue_imported, sync_partner_account as sync
with taskmill.batch(on_finish=catalogue_imported, description="browser test batch") as batch:
    calls = [((), {{"account": f"batch-{{i}}", "seconds": 1.5}}) for i in range({MEMBERS})]
    sync.enqueue_many(calls)
print(batch.pk)
"""
ENDED = re.compile(r"(\d+) of (\d+)")


def ended(browser: Chrome, batch_id: int) -> int | None:
    """How many members the dashboard's row of the batch says ended, or None if no row."""
    rows = browser.find_elements(By.CSS_SELECTOR, f'#tm-batches tr[data-tm-batch="{batch_id}"]')
    if not rows:
        return None
    found = ENDED.search(rows[0].find_element(By.CSS_SELECTOR, ".tm-batch-ended").text)
    assert found and int(found[2]) == MEMBERS, rows[0].text
    return int(found[1])


def painted(part: WebElement) -> bool:
    """Whether a bar's part is drawn in a colour (a colour variable missing on the page
    leaves it transparent: the batch page once showed a full batch as an empty bar)."""
    colour = part.value_of_css_property("background-color")
    return colour not in ("", "transparent", "rgba(0, 0, 0, 0)")


def test_a_batchs_bar_moves_on_the_dashboard_and_its_page_tells_its_story(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    batch_id = int(demo.manage("shell", "-c", ENQUEUE).strip().splitlines()[-1])
    open_page(browser, f"{demo.base_url}/admin/taskmill/dashboard/", "dashboard")
    first = wait_for(
        browser,
        lambda b: (count := ended(b, batch_id)) is not None and count < MEMBERS and (count,),
        WORKER_DEADLINE,
        message=f"batch {batch_id} on the dashboard, not finished yet",
    )[0]
    screenshot("dashboard-batch-open", show=element(browser, "#tm-batches"))
    # The page's own refresh (every 5 s) brings the next figures: no reload here.
    later = wait_for(
        browser,
        lambda b: (count := ended(b, batch_id)) is not None and count > first and (count,),
        WORKER_DEADLINE,
        message=f"batch {batch_id}'s bar moving past {first} of {MEMBERS}",
    )[0]
    row = element(browser, f'#tm-batches tr[data-tm-batch="{batch_id}"]')
    parts = row.find_elements(By.CSS_SELECTOR, ".tm-batch-bar span")
    widths = [float(part.get_attribute("style").split(":")[1].strip(" %;")) for part in parts]
    assert sum(widths) == pytest.approx(100 * later / MEMBERS, abs=0.1)
    assert parts and all(painted(part) for part in parts)
    screenshot("dashboard-batch-moved", show=row)

    # Its page: open it from the dashboard's link, once the batch finished.
    page = f"{demo.base_url}/admin/taskmill/batch/{batch_id}/change/"
    refresh_until(
        browser,
        page,
        lambda b: "finished" in b.find_element(By.CSS_SELECTOR, ".field-state").text,
        WORKER_DEADLINE,
        message=f"batch {batch_id} finished on its page",
    )
    counts = element(browser, ".tm-batch-counts").text
    assert f"members: {MEMBERS}" in counts
    assert "pending (waiting, ready, running or retrying): 0" in counts
    callback = element(browser, ".tm-batch-callbacks li").text
    assert callback.startswith("on_finish demo.tasks.catalogue_imported: #"), callback
    bar = browser.find_elements(By.CSS_SELECTOR, ".field-progress .tm-batch-bar span")
    assert bar and all(painted(part) for part in bar)
    screenshot("batch-page-finished", show=element(browser, ".field-counts"))

    element(browser, "a.tm-batch-members").click()
    wait_for(browser, lambda b: f"batch={batch_id}" in b.current_url, message="the members' list")
    listed = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(listed) == MEMBERS
    screenshot("batch-members")
