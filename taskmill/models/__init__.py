"""taskmill's tables: one module per concept."""

from .runs import Run

__all__ = ["Run"]
