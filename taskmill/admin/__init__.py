"""taskmill's control room, inside the Django admin: a dashboard, runs, schedules, workers and
queues. Importing the package registers every page with the default admin site."""

from . import dashboard, runs, schedules

__all__ = ["dashboard", "runs", "schedules"]
