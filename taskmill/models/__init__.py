"""taskmill's tables: one module per concept."""

from .runs import ACTIVE_STATUSES, FINISHED_STATUSES, Dashboard, Run, RunDependency, RunStatus
from .schedules import Schedule
from .stats import RunStats, RunStatsHourly
from .workers import Queue, Worker

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "Dashboard",
    "Queue",
    "Run",
    "RunDependency",
    "RunStats",
    "RunStatsHourly",
    "RunStatus",
    "Schedule",
    "Worker",
]
