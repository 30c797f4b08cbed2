"""The test settings plus this package as an app, so that processes started by the
scheduler tests discover ``tests/scheduler/schedules.py`` (the code declarations)."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.scheduler"]
