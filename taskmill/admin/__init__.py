"""taskmill's control room, inside the Django admin: a dashboard, runs, batches, schedules,
workers and queues. Importing the package registers every page with the default admin site."""

from . import batches, dashboard, queues, runs, schedules, workers

__all__ = ["batches", "dashboard", "queues", "runs", "schedules", "workers"]
