"""The worker process: the loop that claims and finishes runs, and the task executor."""

from .loop import Worker, WorkerInterrupted, WorkerOptions

__all__ = ["Worker", "WorkerInterrupted", "WorkerOptions"]
