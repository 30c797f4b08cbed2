"""The test suite's settings, with Django's per-task log lines off as in ``python -m bench``
(bench/peers/djsettings.py): a profile of the worker, not of the logging module."""

from tests.settings import *  # noqa: F403

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.tasks": {"level": "WARNING"}, "django_tasks": {"level": "WARNING"}},
}
