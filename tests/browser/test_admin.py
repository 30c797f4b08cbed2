"""Today's admin in a real browser, against the demo project at work: its worker runs the demo
tasks and fires the demo schedules while the pages are read."""

from __future__ import annotations

import json
import re

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from .demo import DemoProject
from .helpers import Screenshot, column, element, login, open_page, refresh_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

# The demo's worker needs a few seconds for its first runs; a loaded CI machine, more.
WORKER_DEADLINE = 180.0


def readonly(browser: Chrome, field: str) -> str:
    """The value a change page shows for a read-only FIELD."""
    return element(browser, f".field-{field} .readonly").text


def statuses(browser: Chrome) -> list[str]:
    """The runs list's statuses (the status cell says the attempts made below it)."""
    cells = browser.find_elements(By.CSS_SELECTOR, ".field-status .tm-status")
    return [cell.text for cell in cells]


def test_the_login_page_and_the_admin_index(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    browser.delete_all_cookies()
    open_page(browser, f"{demo.base_url}/admin/", "Log in")  # the index sends strangers here
    assert browser.find_element(By.ID, "id_username").is_displayed()
    screenshot("login")

    login(browser, demo.base_url)
    assert "admin" in element(browser, "#user-tools").text.lower()
    app = element(browser, ".app-taskmill")
    for model in ("Dashboard", "Task runs", "Schedules", "Queues", "Workers"):
        assert model in app.text
    screenshot("index")


def test_a_successful_run_in_the_list_and_on_its_page(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    runs = f"{demo.base_url}/admin/taskmill/run/"
    open_page(browser, runs, "Select task run to view")
    screenshot("runs-list")

    # The worker runs the demo's tasks meanwhile: reload until one shows as Successful.
    refresh_until(
        browser,
        runs,
        lambda b: "Successful" in statuses(b),
        WORKER_DEADLINE,
        message="a Successful run in the runs list",
    )
    row = next(
        row
        for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        if row.find_element(By.CSS_SELECTOR, ".field-status .tm-status").text == "Successful"
    )
    link = row.find_element(By.CSS_SELECTOR, ".field-id a")
    task = row.find_element(By.CSS_SELECTOR, ".field-task_name")
    run_id, task_name = link.text, task.text.splitlines()[0]
    [(status, task_path)] = demo.query(
        "SELECT status, task_path FROM taskmill_run WHERE id = ?", int(run_id)
    )
    assert status == "SUCCESSFUL" and task_path.endswith(f".{task_name}")
    assert task.find_element(By.CSS_SELECTOR, "[title]").get_attribute("title") == task_path
    # Times to the second (the date where it changes), the whole in the title; a duration.
    finished = row.find_element(By.CSS_SELECTOR, ".field-finished time")
    assert re.fullmatch(r"(\d\d-\d\d )?\d\d:\d\d:\d\d", finished.text), finished.text
    assert len(finished.get_attribute("title")) == len("2026-01-01 00:00:00.000 UTC")
    assert row.find_element(By.CSS_SELECTOR, ".field-duration").text.endswith(("ms", " s"))
    screenshot("runs-list-with-a-successful-run", show=row)

    link.click()
    element(browser, "#content h1")
    assert "task run" in browser.title and f"#{run_id} " in element(browser, "#content h2").text
    assert readonly(browser, "task_path") == task_path
    assert readonly(browser, "status") == "Successful"
    assert readonly(browser, "finished_at_ms") not in ("", "—")
    assert not browser.find_elements(By.NAME, "_save")  # what happened is not edited
    screenshot(f"run-{run_id}")


def test_a_failed_run_shows_its_error(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    failed = f"{demo.base_url}/admin/taskmill/run/?status__exact=FAILED"
    # import_batch fails every third batch, stuck_export for good at its timeout.
    refresh_until(
        browser,
        failed,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#result_list .field-id a"),
        WORKER_DEADLINE,
        message="a Failed run in the runs list filtered by status",
    )
    assert set(statuses(browser)) == {"Failed"}
    screenshot("failed-runs")

    link = browser.find_element(By.CSS_SELECTOR, "#result_list .field-id a")
    run_id = link.text
    link.click()
    element(browser, "#content h1")
    assert f"#{run_id} " in element(browser, "#content h2").text
    assert readonly(browser, "status") == "Failed"
    [(errors,)] = demo.query("SELECT errors FROM taskmill_run WHERE id = ?", int(run_id))
    last_error = json.loads(errors)[-1]["exception_class_path"].rsplit(".", 1)[-1]
    shown = element(browser, ".field-errors_list .tm-errors")
    assert last_error in shown.text and "\\n" not in shown.text  # readable, not escaped JSON
    # Before the traceback opens: the picture in docs/control-room.md (a traceback would
    # show this machine's paths).
    screenshot("failed-run", show=shown)
    # The traceback opens as lines.
    shown.find_element(By.CSS_SELECTOR, "summary").click()
    assert "Traceback (most recent call last):" in element(browser, ".tm-traceback").text
    screenshot(f"run-{run_id}-failed", show=shown)


def test_the_runs_of_one_queue(browser: Chrome, demo: DemoProject, screenshot: Screenshot) -> None:
    # The README's example of a new page's test: open it, assert what it shows, photograph it.
    open_page(browser, f"{demo.base_url}/admin/taskmill/run/?queue_name=emails", "task run")
    # Each queue cell says the run's priority below its queue.
    queues = {cell.splitlines()[0] for cell in column(browser, "queue_name")}
    assert queues == {"emails"}  # not empty: the demo sent mails
    screenshot("emails-queue")


def test_the_schedules_list_and_a_schedule(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    schedules = f"{demo.base_url}/admin/taskmill/schedule/"
    open_page(browser, schedules, "Select schedule to change")
    names = column(browser, "name")
    assert set(names) >= {
        "demo: sales report every 30s",
        "demo: session clean-up every 2 minutes",
        "demo: once, a launch page",
        "demo: signups report after the sales report",
    }, names
    screenshot("schedules-list")

    # The one-off schedule is long overdue: the worker's scheduler fires it once, at start.
    def launch_fire_count(b: Chrome) -> bool:
        row = b.find_element(By.XPATH, "//tr[.//a[text()='demo: once, a launch page']]")
        return row.find_element(By.CSS_SELECTOR, ".field-fire_count").text == "1"

    refresh_until(
        browser, schedules, launch_fire_count, WORKER_DEADLINE, message="the one-off schedule fired"
    )
    screenshot("schedules-list-after-a-fire", show=element(browser, ".field-fire_count"))

    browser.find_element(By.LINK_TEXT, "demo: sales report every 30s").click()
    element(browser, "#content h1")
    assert "schedule" in browser.title
    # Declared in code, so shown read-only: no input to edit the interval.
    assert readonly(browser, "name") == "demo: sales report every 30s"
    assert readonly(browser, "task_path") == "demo.tasks.rebuild_report"
    assert readonly(browser, "interval") == "0:00:30"
    assert not browser.find_elements(By.NAME, "interval")
    screenshot("schedule-sales-report")
