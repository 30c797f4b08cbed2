"""taskmill's tables: one module per concept."""

from .runs import Run
from .schedules import Schedule

__all__ = ["Run", "Schedule"]
