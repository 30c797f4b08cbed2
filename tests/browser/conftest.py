"""The browser tests' set-up: the demo project served for real, and headless chromium.

A missing chromium, chromedriver or selenium skips these tests with the reason locally; under
CI (CI=true) it fails them, as scripts/test does with a database it cannot reach.

Fixtures for a test:
    demo           the running demo project (base_url, query(), ...), shared by the folder
    browser        a chromium session logged in as the demo's admin
    laptop_width   the same, its window 1,280 pixels wide (a common laptop's) for the test
    screenshot     screenshot("step") saves .venv/test-logs/screenshots/<test>__NN-step.png
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from . import chrome
from .demo import ROOT, DemoProject

if TYPE_CHECKING:
    from selenium.webdriver import Chrome
    from selenium.webdriver.remote.webelement import WebElement

    from .helpers import Screenshot

ARTEFACTS = ROOT / ".venv" / "test-logs"
SCREENSHOTS = ARTEFACTS / "screenshots"


def under_ci() -> bool:
    return os.environ.get("CI", "") in ("true", "1", "True")


def no_browser(reason: str) -> None:
    if under_ci():
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


# Without selenium the test modules cannot even be imported: decide for the whole folder.
if _why := chrome.selenium_missing():
    if under_ci():
        raise pytest.UsageError(f"CI=true and the browser tests cannot run: {_why}")
    pytest.skip(f"browser tests skipped: {_why}", allow_module_level=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Kept on the item so that the browser fixture can photograph a failing page.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# Package scope, not session: in a whole-suite run the demo's worker, server and chromium
# stop when this folder's tests end, rather than loading the machine under the other suites.
@pytest.fixture(scope="package")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProject]:
    """The demo project on a fresh SQLite file: migrated, demo_setup, a worker with its
    scheduler, demo_enqueue and runserver on a free port. Logs: .venv/test-logs/browser-demo/."""
    if why := chrome.missing():
        no_browser(why)
    project = DemoProject(tmp_path_factory.mktemp("demo"), ARTEFACTS / "browser-demo")
    try:
        project.set_up()
        project.wait_until_serving()
        yield project
    finally:
        project.stop()


@pytest.fixture(scope="package")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    """One headless chromium for the folder; tests get it through `browser`."""
    if why := chrome.missing():
        no_browser(why)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    session = chrome.start_chromium(
        tmp_path_factory.mktemp("chromium-profile"), ARTEFACTS / "chromedriver.log"
    )
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def browser(
    chromium: Chrome, demo: DemoProject, request: pytest.FixtureRequest
) -> Iterator[Chrome]:
    """The session's chromium, logged out then logged in again as the demo's admin, so each
    test starts from the same place. A failing test leaves a screenshot of its last page."""
    from .helpers import login

    chromium.delete_all_cookies()
    login(chromium, demo.base_url)
    yield chromium
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        save_screenshot(chromium, f"{test_name(request.node)}__failed")


def test_name(node: pytest.Item) -> str:
    """A file-name-safe name of the test: module and function, parameters included."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{node.path.stem}.{node.name}")


def save_screenshot(browser: Chrome, stem: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Two animation frames: a scroll made just before is painted, not only scheduled (else
    # headless chromium can photograph the scroll bar moved and the content not yet).
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "requestAnimationFrame(() => requestAnimationFrame(done));"
    )
    path = SCREENSHOTS / f"{stem}.png"
    if not browser.save_screenshot(str(path)):
        raise AssertionError(f"chromium could not save the screenshot {path}")
    return path


@pytest.fixture
def laptop_width(browser: Chrome) -> Iterator[Chrome]:
    browser.set_window_size(1280, chrome.WINDOW[1])
    yield browser
    browser.set_window_size(*chrome.WINDOW)


@pytest.fixture
def screenshot(browser: Chrome, request: pytest.FixtureRequest) -> Screenshot:
    """screenshot("runs-list") saves the page as <test>__01-runs-list.png, numbered in order;
    screenshot("run", show=element) first scrolls ELEMENT into the middle of the window, so
    that the picture shows what the test found."""
    name = test_name(request.node)
    for old in SCREENSHOTS.glob(f"{name}__*.png"):
        old.unlink()  # a screenshot from an earlier run must not pass for this one's
    taken = 0

    def take(step: str, show: WebElement | None = None) -> Path:
        nonlocal taken
        taken += 1
        if show is not None:
            browser.execute_script(
                "arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})", show
            )
        return save_screenshot(
            browser, f"{name}__{taken:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', step)}"
        )

    return take


@pytest.fixture(autouse=True)
def _demo_still_running(request: pytest.FixtureRequest) -> Iterator[None]:
    # A page that fails because the worker or the server died should say so.
    yield
    # Only a demo this test did get: asking for one here would start it after a skip.
    project = getattr(request.node, "funcargs", {}).get("demo")
    if isinstance(project, DemoProject) and (why := project.dead()):
        pytest.fail(why, pytrace=False)
