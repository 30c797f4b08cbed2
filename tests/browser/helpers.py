"""What a browser test does over and over: log in, wait for a page, read it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

if TYPE_CHECKING:
    from selenium.webdriver import Chrome
    from selenium.webdriver.remote.webelement import WebElement


class Screenshot(Protocol):
    """The `screenshot` fixture: save the page as a PNG named by the test and STEP."""

    def __call__(self, step: str, show: WebElement | None = None) -> Path: ...


# The demo's superuser, made by `manage.py demo_setup`.
ADMIN_USER = ("admin", "admin")
# Generous: the machines that run this also run soaks; a healthy page is there in a second.
DEFAULT_WAIT = 30.0


# chromium's words for an element whose document was replaced under the read.
_NODE_GONE = "does not belong to the document"


def wait_for[T](
    browser: Chrome,
    condition: Callable[[Chrome], T | bool | None],
    timeout: float = DEFAULT_WAIT,
    message: str = "",
    poll: float = 0.25,
) -> T:
    """Poll CONDITION(browser) until it returns something truthy, and return that; fail with
    MESSAGE, the page's URL and title once TIMEOUT seconds have passed.

    An element gone stale between finding and reading it counts as "not yet": the control
    room's pages replace their sections as they refresh themselves (CI caught one replaced
    under a test's feet), and the next poll finds the new one. So does a node that a page
    load removed while chromium read it, which chromium reports as an "unknown error" rather
    than a stale element (CI caught one after a form's submit)."""

    def tolerant(b: Chrome) -> T | bool | None:
        try:
            return condition(b)
        except WebDriverException as error:
            if _NODE_GONE in str(error.msg or ""):
                return False
            raise

    try:
        waiting = WebDriverWait(
            browser,
            timeout,
            poll_frequency=poll,
            ignored_exceptions=[StaleElementReferenceException],
        )
        return waiting.until(tolerant)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout}s waiting for {message or condition} "
            f"(at {browser.current_url}, title {browser.title!r})"
        ) from None


def element(browser: Chrome, css: str, timeout: float = DEFAULT_WAIT) -> WebElement:
    """The first element matching CSS, once it is on the page."""
    return wait_for(
        browser,
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)),
        timeout,
        message=f"an element matching {css!r}",
    )


def open_page(browser: Chrome, url: str, title: str, timeout: float = DEFAULT_WAIT) -> None:
    """Load URL and wait until its <title> contains TITLE (a Django error page would not)."""
    browser.get(url)
    wait_for(
        browser,
        expected_conditions.title_contains(title),
        timeout,
        message=f"a page titled {title!r} at {url}",
    )


def login(browser: Chrome, base_url: str, user: tuple[str, str] = ADMIN_USER) -> None:
    """Log in through the admin's own login form, as a person would."""
    open_page(browser, f"{base_url}/admin/login/", "Log in")
    browser.find_element(By.ID, "id_username").send_keys(user[0])
    browser.find_element(By.ID, "id_password").send_keys(user[1])
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The admin index greets the user by name in its header once the login took.
    wait_for(
        browser,
        lambda b: "Site administration" in b.title and b.find_elements(By.ID, "user-tools"),
        message=f"the admin index after logging in as {user[0]!r}",
    )


def refresh_until[T](
    browser: Chrome,
    url: str,
    condition: Callable[[Chrome], T | bool | None],
    timeout: float,
    message: str,
    poll: float = 1.0,
) -> T:
    """Reload URL until CONDITION holds on it: for pages that show what the worker does."""

    def reloaded(b: Chrome) -> T | bool | None:
        b.get(url)
        return condition(b)

    return wait_for(browser, reloaded, timeout, message=message, poll=poll)


def column(browser: Chrome, field: str) -> list[str]:
    """The texts of one column of an admin change list (its cells carry class field-NAME)."""
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, f".field-{field}")]


def no_sideways_scroll(browser: Chrome) -> None:
    """Neither the page nor a change list's table (the admin scrolls it in its own box)."""
    overflow = browser.execute_script(
        "return [document.documentElement, ...document.querySelectorAll('.results')]"
        ".map(box => box.scrollWidth - box.clientWidth)"
    )
    assert max(overflow) <= 0, f"sideways scroll: {overflow} px"
