"""taskmill's tables: one module per concept."""

from ..status import ACTIVE_STATUSES, FINISHED_STATUSES, RunStatus
from .runs import Dashboard, Run, RunDependency
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
