"""The control room in a real browser, on the demo at work: the dashboard fills and refreshes
itself, and an operator pauses a queue, enqueues a run, cancels it and retries it with the
buttons."""

from __future__ import annotations

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from .demo import DemoProject
from .helpers import Screenshot, element, open_page, refresh_until, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

WORKER_DEADLINE = 180.0


def message(browser: Chrome) -> str:
    """The admin's message after an action ("" until there is one)."""
    shown = browser.find_elements(By.CSS_SELECTOR, ".messagelist")
    return shown[0].text if shown else ""


def test_the_dashboard_fills_and_refreshes_itself(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    dashboard = f"{demo.base_url}/admin/taskmill/dashboard/"
    # Filled within a minute or so of the demo starting: its worker's first outcomes.
    refresh_until(
        browser,
        dashboard,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#tm-charts rect.tm-ok"),
        WORKER_DEADLINE,
        message="bars in the dashboard's throughput chart",
    )
    [(finished,)] = demo.query("SELECT count(*) FROM taskmill_run WHERE finished_at IS NOT NULL")
    assert finished > 0
    for chart in browser.find_elements(By.CSS_SELECTOR, "#tm-charts svg.tm-chart"):
        drawn = chart.find_elements(By.CSS_SELECTOR, "rect, polyline")
        assert drawn, f"an empty chart ({chart.get_attribute('aria-label')}) while runs exist"
    queues = element(browser, "#tm-queues").text
    assert "default" in queues and "emails" in queues
    assert "Workers: 1 alive" in element(browser, "#tm-workers").text
    # The admin's dark breadcrumb bar, as on its own pages (not text at the page's edge).
    bar = element(browser, ".breadcrumbs")
    assert bar.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
    screenshot("dashboard")

    # The page re-fetches its sections by itself while the tab is visible.
    room = element(browser, "[data-tm-every]")
    wait_for(
        browser,
        lambda b: room.get_attribute("data-tm-refreshed-at"),
        timeout=60,
        message="a live refresh of the dashboard",
    )
    Select(element(browser, "select[name=window]")).select_by_value("day")
    element(browser, ".tm-choices input[type=submit]").click()
    wait_for(browser, lambda b: "last day" in b.find_element(By.ID, "tm-charts").text)
    screenshot("dashboard-day")

    # The admin's dark theme (its toggle keeps the choice in localStorage): the page follows
    # it through the admin's own CSS variables.
    browser.execute_script("localStorage.setItem('theme', 'dark')")
    browser.refresh()
    wait_for(
        browser, lambda b: b.find_element(By.TAG_NAME, "html").get_attribute("data-theme") == "dark"
    )
    background = browser.execute_script(
        "return getComputedStyle(document.querySelector('.tm-chart-box')).backgroundColor"
        " || getComputedStyle(document.body).backgroundColor"
    )
    body = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert body not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)"), body
    assert background is not None
    screenshot("dashboard-dark")
    browser.execute_script("localStorage.removeItem('theme')")


def test_pause_enqueue_cancel_and_retry_with_the_buttons(
    browser: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    base = demo.base_url
    # Pause the e-mail queue, so that the run enqueued next stays ready.
    queues = f"{base}/admin/taskmill/queue/"
    open_page(browser, queues, "queue")
    element(browser, 'input.action-select[value="emails"]').click()
    Select(element(browser, "select[name=action]")).select_by_value("pause")
    element(browser, "button[name=index]").click()
    wait_for(
        browser, lambda b: "Paused: emails." in b.find_element(By.CSS_SELECTOR, ".messagelist").text
    )
    screenshot("queue-paused")

    open_page(browser, f"{base}/admin/taskmill/run/enqueue/", "Enqueue a run")
    Select(element(browser, "#id_task_path")).select_by_value("demo.tasks.send_welcome_email")
    arguments = element(browser, "#id_kwargs")
    arguments.clear()
    arguments.send_keys('{"email": "ada@example.com", "name": "Ada"}')
    screenshot("enqueue-form")
    element(browser, "input[type=submit][value=Enqueue]").click()
    wait_for(
        browser, lambda b: "Enqueued run" in b.find_element(By.CSS_SELECTOR, ".messagelist").text
    )
    run_id = int(browser.current_url.rstrip("/").split("/")[-2])
    assert demo.query("SELECT status, queue_name FROM taskmill_run WHERE id = ?", run_id) == [
        ("READY", "emails")
    ]

    element(browser, "button.tm-act-cancel").click()
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "button.tm-act-retry"))
    assert demo.query("SELECT status FROM taskmill_run WHERE id = ?", run_id) == [("CANCELLED",)]
    screenshot("run-cancelled")
    element(browser, "button.tm-act-retry").click()
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "button.tm-act-cancel"))
    assert demo.query("SELECT status FROM taskmill_run WHERE id = ?", run_id) == [("READY",)]

    # Resume the queue: the worker sends the mail.
    open_page(browser, queues, "queue")
    element(browser, 'input.action-select[value="emails"]').click()
    Select(element(browser, "select[name=action]")).select_by_value("resume")
    element(browser, "button[name=index]").click()
    refresh_until(
        browser,
        f"{base}/admin/taskmill/run/{run_id}/change/",
        lambda b: "Successful" in b.find_element(By.CSS_SELECTOR, ".field-status .readonly").text,
        WORKER_DEADLINE,
        message=f"run {run_id} to succeed once its queue was resumed",
    )
    screenshot("run-retried-and-done")
