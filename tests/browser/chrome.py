"""Debian's chromium, headless, driven through its own chromedriver.

Both programs are named by path, so Selenium never runs Selenium Manager, which would
otherwise look for (and download) a browser and a driver; SE_OFFLINE forbids that anyway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

# Where Debian's chromium and chromium-driver install them; scripts/lib.sh agrees.
CHROMIUM = Path(os.environ.get("TASKMILL_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TASKMILL_CHROMEDRIVER", "/usr/bin/chromedriver"))
WINDOW = (1400, 1000)


def missing() -> str | None:
    """Why no browser session can be had here, or None when everything is in place."""
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(program, os.X_OK):
            return f"{program} not found (apt-get install {package}; scripts/test does it)"
    return selenium_missing()


def selenium_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the dev extra: pip install -e '.[dev]')"
    return None


def start_chromium(profile: Path, log: Path) -> Chrome:
    """A new headless chromium with a throw-away profile; its driver logs to LOG."""
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
        # Containers give /dev/shm 64 MB, too little for a renderer.
        "--disable-dev-shm-usage",
        "--disable-gpu",
        # Nothing on the network but the demo: no first-run pages, sync, component updates.
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        # Chromium refuses to run as root with its sandbox on.
        options.add_argument("--no-sandbox")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log))
    browser = Chrome(options=options, service=service)
    # A page that has not loaded in a minute is broken, even on a loaded machine.
    browser.set_page_load_timeout(60)
    return browser
