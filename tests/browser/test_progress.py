"""A running task's progress in a real browser: the demo's ``import_catalogue`` reports as it
goes (``context.set_progress``), and its bar shows, and moves, on its page and in the list."""

from __future__ import annotations

import time

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .demo import DemoProject
from .helpers import Screenshot, element, open_page, refresh_until, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

TASK = "demo.tasks.import_catalogue"
# Its worker may be busy with the demo's other runs first; a loaded CI machine, more so.
WORKER_DEADLINE = 180.0


def running_with_progress(demo: DemoProject) -> int:
    """The id of an import_catalogue run that runs and has reported, once there is one."""
    deadline = time.monotonic() + WORKER_DEADLINE
    while True:
        found = demo.query(
            "SELECT id FROM taskmill_run WHERE task_path = ? AND status = 'RUNNING' "
            "AND json_extract(metadata, '$.progress.done') > 0 "
            # The round's import (300 rows), not another test's (test_lists_fit: 1800).
            "AND json_extract(metadata, '$.progress.total') = 300 ORDER BY id DESC LIMIT 1",
            TASK,
        )
        if found:
            return found[0][0]
        if why := demo.dead():
            raise AssertionError(why)
        if time.monotonic() > deadline:
            raise AssertionError(f"no {TASK} run reported progress in {WORKER_DEADLINE}s")
        time.sleep(0.25)  # a poll interval under a deadline


def bar_value(browser: Chrome, css: str) -> float:
    return float(browser.find_element(By.CSS_SELECTOR, css).get_attribute("value"))


def test_a_running_runs_progress_bar_shows_and_moves(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    demo.enqueue_round()  # its import_catalogue reports for 30 seconds
    run_id = running_with_progress(demo)

    # In the list, among the running runs: a small bar and its figures.
    runs = f"{demo.base_url}/admin/taskmill/run/?task_path={TASK}&status__exact=RUNNING"
    open_page(browser, runs, "task run")
    row = wait_for(
        browser,
        lambda b: next(
            (
                row
                for row in b.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
                if row.find_element(By.CSS_SELECTOR, ".field-id").text == str(run_id)
            ),
            None,
        ),
        message=f"run {run_id} among the running runs",
    )
    cell = row.find_element(By.CSS_SELECTOR, ".field-running_progress .tm-progress-small")
    assert "/300" in cell.text
    screenshot("runs-list-progress", show=cell)

    # On its page: the bar, its figures and the task's message.
    page = f"{demo.base_url}/admin/taskmill/run/{run_id}/change/"
    open_page(browser, page, "task run")
    bar = element(browser, ".field-progress progress.tm-progress")
    assert bar.get_attribute("max") == "300"
    first = float(bar.get_attribute("value"))
    assert 0 < first <= 300
    message = element(browser, ".field-progress .tm-progress-message").text
    assert message.startswith("imported ") and "catalogue-1.csv" in message
    screenshot("run-page-progress", show=bar)

    # Reloaded a moment later, the bar has moved on.
    refresh_until(
        browser,
        page,
        lambda b: bar_value(b, ".field-progress progress.tm-progress") > first,
        60,
        message=f"the bar of run {run_id} to move past {first}",
    )
    screenshot("run-page-progress-moved", show=element(browser, ".field-progress"))
