"""taskmill's tables: one module per concept."""

from ..status import ACTIVE_STATUSES, FINISHED_STATUSES, RunStatus
from .batches import Batch
from .limits import Limit, LimitStart
from .runs import Dashboard, Run, RunDependency
from .schedules import Schedule
from .stats import RunStats, RunStatsHourly, RunStatsTotal
from .workers import Queue, Worker

__all__ = [
    "ACTIVE_STATUSES",
    "FINISHED_STATUSES",
    "Batch",
    "Dashboard",
    "Limit",
    "LimitStart",
    "Queue",
    "Run",
    "RunDependency",
    "RunStats",
    "RunStatsHourly",
    "RunStatsTotal",
    "RunStatus",
    "Schedule",
    "Worker",
]
