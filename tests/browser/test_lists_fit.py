"""The runs, schedules and workers lists at 1,280 pixels, a common laptop's width, with the
admin's navigation sidebar open as it is by default: no sideways scroll, every column in
view, in the light and the dark theme. The runs list holds a run in every state, a running
one with its progress bar and one whose task path is long (and unknown to the workers)."""

from __future__ import annotations

import json
import time

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from .demo import DemoProject
from .helpers import Screenshot, element, no_sideways_scroll, open_page, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

WORKER_DEADLINE = 180.0
LONG_PATH = "partners.billing.reconciliation.tasks.reconcile_partner_invoices_for_the_month"
STATUSES = ("Ready", "Waiting", "Running", "Successful", "Failed", "Cancelled")
# A run of each state: two the worker ends (one fails: import_batch fails every third
# batch), an import that reports its progress for three minutes, so that it still runs when
# the dark theme's turn comes, one deferred an hour (READY), one
# waiting for it (WAITING), one cancelled, and a run of a task no worker knows, under a long
# path and queue name, deferred too so that no worker fails it meanwhile. Prints their ids.
SET_UP = f"""
import json
from datetime import timedelta
from django.utils import timezone
from taskmill import control
from taskmill.models import Run
from demo.tasks import import_batch, import_catalogue, rebuild_report
later = timezone.now() + timedelta(hours=1)
ready = rebuild_report.using(run_after=later).enqueue("weekly")
cancelled = rebuild_report.using(run_after=later).enqueue("never")
control.cancel(cancelled.id)
unknown = Run.objects.create(
    task_path="{LONG_PATH}", backend="default", queue_name="partner_invoices",
    args=[], kwargs={{}}, enqueued_at=timezone.now(), available_at=later, status="READY",
)
ids = {{
    "Successful": import_batch.enqueue(1).id,
    "Failed": import_batch.enqueue(3).id,
    "Running": import_catalogue.enqueue(rows=1800).id,
    "Ready": ready.id,
    "Waiting": rebuild_report.using(depends_on=[ready]).enqueue("after the weekly").id,
    "Cancelled": cancelled.id,
    "long": unknown.pk,
}}
print(json.dumps({{name: int(pk) for name, pk in ids.items()}}))
"""
# Leave the demo as the other tests expect it: none of this test's runs waiting.
CLEAN_UP = """
from taskmill import control
for run_id in {ids}:
    control.cancel(run_id)
"""


def set_up_runs(demo: DemoProject) -> dict[str, int]:
    output = demo.manage("shell", "--verbosity", "0", "-c", SET_UP)
    return json.loads(output.strip().splitlines()[-1])


def wait_for_the_worker(demo: DemoProject, ids: dict[str, int]) -> None:
    """Until the worker ended the two runs it ends, and the import has reported progress."""
    deadline = time.monotonic() + WORKER_DEADLINE
    while True:
        [(successful, failed, progress)] = demo.query(
            "SELECT (SELECT status FROM taskmill_run WHERE id = ?),"
            " (SELECT status FROM taskmill_run WHERE id = ?),"
            " (SELECT json_extract(metadata, '$.progress.done') FROM taskmill_run"
            "  WHERE id = ? AND status = 'RUNNING')",
            ids["Successful"],
            ids["Failed"],
            ids["Running"],
        )
        if (successful, failed) == ("SUCCESSFUL", "FAILED") and (progress or 0) > 0:
            return
        if why := demo.dead():
            raise AssertionError(why)
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {WORKER_DEADLINE}s: {successful}, {failed}, progress {progress}"
            )
        time.sleep(0.25)  # a poll interval under a deadline


def row_of(browser: Chrome, run_id: int) -> WebElement:
    link = element(browser, f'#result_list .field-id a[href$="/run/{run_id}/change/"]')
    return link.find_element(By.XPATH, "./ancestor::tr")


def every_column_in_view(browser: Chrome) -> None:
    """Each header of the list, the last one included, lies inside the list's box and the
    window, and is not squeezed to nothing."""
    columns = browser.execute_script(
        "const box = document.querySelector('.results').getBoundingClientRect();"
        "return [...document.querySelectorAll('#result_list thead th')].map(th => {"
        "  const r = th.getBoundingClientRect();"
        "  return [th.className, r.width, r.right, box.right,"
        "          document.documentElement.clientWidth]; });"
    )
    assert columns, "no list on the page"
    for name, width, right, box_right, window_right in columns:
        assert width > 10, f"column {name} is {width} px wide"
        assert right <= box_right + 0.5 and right <= window_right, (
            f"column {name} ends at {right} px, past the list's box ({box_right}) "
            f"or the window ({window_right})"
        )


def readable(browser: Chrome, css: str) -> None:
    """The quiet lines (.tm-sub, the times' labels) stand out from what is behind them: a
    contrast ratio of 4.5 at least (WCAG's AA for text), in whichever theme is on."""
    ratios = browser.execute_script(
        """
        const rgb = value => value.match(/[\\d.]+/g).map(Number);
        const luminance = ([r, g, b]) => {
          const [R, G, B] = [r, g, b].map(c => {
            c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
          return 0.2126 * R + 0.7152 * G + 0.0722 * B;
        };
        const behind = node => {
          for (; node; node = node.parentElement) {
            const c = rgb(getComputedStyle(node).backgroundColor);
            if (c.length < 4 || c[3] > 0) return c;
          }
          return [255, 255, 255];
        };
        return [...document.querySelectorAll(arguments[0])].map(node => {
          const [a, b] = [luminance(rgb(getComputedStyle(node).color)),
                          luminance(behind(node))];
          return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        });
        """,
        css,
    )
    assert ratios, f"nothing matches {css!r}"
    assert min(ratios) >= 4.5, f"{css}: contrast ratios {sorted(ratios)[:3]}..."


def check_the_runs_list(browser: Chrome, ids: dict[str, int]) -> None:
    shown = {name: row_of(browser, run_id) for name, run_id in ids.items()}
    for status in STATUSES:
        label = shown[status].find_element(By.CSS_SELECTOR, ".field-status .tm-status").text
        assert label == status, (status, label)
    # The long path wraps in its cell: its name, then its module, whole in the title.
    task = shown["long"].find_element(By.CSS_SELECTOR, ".field-task_name")
    assert "".join(task.text.split()).startswith(
        "reconcile_partner_invoices_for_the_monthpartners.billing.reconciliation.tasks"
    ), task.text
    assert task.find_element(By.CSS_SELECTOR, "[title]").get_attribute("title") == LONG_PATH
    assert "unknown task" in task.text
    # The running import's bar, under its status.
    bar = shown["Running"].find_element(By.CSS_SELECTOR, ".field-status progress.tm-progress")
    assert float(bar.get_attribute("value")) > 0 and bar.get_attribute("max") == "1800"
    # A finished run's times: enqueued, started, finished and in how long.
    times = shown["Successful"].find_element(By.CSS_SELECTOR, ".field-times")
    labels = [dt.text for dt in times.find_elements(By.CSS_SELECTOR, "dt")]
    assert labels == ["enqueued", "started", "finished"], labels
    assert times.find_element(By.CSS_SELECTOR, ".field-duration").text.endswith(("ms", " s"))
    no_sideways_scroll(browser)
    every_column_in_view(browser)
    readable(browser, "#result_list .tm-sub, #result_list dl.tm-times dt")


def test_the_runs_schedules_and_workers_lists_fit_a_laptop(
    laptop_width: Chrome, demo: DemoProject, screenshot: Screenshot
) -> None:
    browser, base = laptop_width, demo.base_url
    ids = set_up_runs(demo)
    try:
        wait_for_the_worker(demo, ids)
        runs = f"{base}/admin/taskmill/run/"
        open_page(browser, runs, "task run")
        check_the_runs_list(browser, ids)
        screenshot("runs-list")
        screenshot("runs-list-every-state", show=row_of(browser, ids["Running"]))

        schedules = f"{base}/admin/taskmill/schedule/"
        open_page(browser, schedules, "schedule")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) >= 4
        no_sideways_scroll(browser)
        every_column_in_view(browser)
        readable(browser, "#result_list .tm-sub, #result_list dl.tm-times dt")
        screenshot("schedules-list")

        workers = f"{base}/admin/taskmill/worker/"
        open_page(browser, workers, "worker")
        assert browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        no_sideways_scroll(browser)
        every_column_in_view(browser)
        screenshot("workers-list")

        # The admin's dark theme (its toggle keeps the choice in localStorage).
        browser.execute_script("localStorage.setItem('theme', 'dark')")
        try:
            open_page(browser, runs, "task run")
            wait_for(
                browser,
                lambda b: b.find_element(By.TAG_NAME, "html").get_attribute("data-theme") == "dark",
                message="the dark theme",
            )
            check_the_runs_list(browser, ids)
            screenshot("runs-list-dark", show=row_of(browser, ids["Running"]))
            for url, title in ((schedules, "schedule"), (workers, "worker")):
                open_page(browser, url, title)
                no_sideways_scroll(browser)
                every_column_in_view(browser)
                screenshot(f"{title}s-list-dark")
        finally:
            browser.execute_script("localStorage.removeItem('theme')")
    finally:
        demo.manage("shell", "-c", CLEAN_UP.format(ids=list(ids.values())))
