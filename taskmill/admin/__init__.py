"""taskmill's control room, inside the Django admin: a dashboard, runs, schedules, workers and
queues. Importing the package registers every page with the default admin site."""

from . import dashboard, queues, runs, schedules, workers

__all__ = ["dashboard", "queues", "runs", "schedules", "workers"]
