"""taskmill's errors, each a subclass of the framework's own where one fits."""

from __future__ import annotations

from .compat import InvalidTask


class TaskNotRegistered(InvalidTask):
    """A run names a task path that does not resolve to a registered task object.

    The worker refuses such a run (it fails, nothing is called): a database row must not be
    able to choose which code runs.
    """


class InvalidTaskArguments(InvalidTask, TypeError):
    """The arguments, or a return value, cannot be stored as JSON."""
