"""taskmill's errors: each is a ``TaskmillError``, and a subclass of the framework's own or
of Python's where one fits, so ``except InvalidTask`` or ``except ValueError`` still catch it."""

from __future__ import annotations

from .compat import InvalidTask


class TaskmillError(Exception):
    """The base of every error taskmill raises to its users: ``except TaskmillError``
    catches them all (the exceptions of a task's own code are never wrapped in it)."""


class TaskNotRegistered(TaskmillError, InvalidTask):
    """A run names a task path that does not resolve to a registered task object.

    The worker refuses such a run (it fails, nothing is called): a database row must not be
    able to choose which code runs.
    """


class CorruptRun(TaskmillError, InvalidTask):
    """A claimed run's row holds what taskmill never writes (arguments that are not a list,
    a JSON column that is not JSON...): the worker fails the run without calling anything."""


class InvalidTaskArguments(TaskmillError, InvalidTask, TypeError):
    """The arguments cannot be stored as JSON. (A return value that cannot fails its run
    with a plain ``TypeError``, which is what Django's own backends record.)"""


class TaskTimeout(TaskmillError, TimeoutError):
    """The attempt ran past its task's ``timeout`` and was killed (or cancelled)."""


class WorkerLost(TaskmillError):
    """The worker running the attempt died or lost its lease; the attempt's outcome is
    unknown. Recorded in the run's errors; the run goes again (up to
    TASKMILL_MAX_LOST_ATTEMPTS lost attempts)."""


class RunCancelled(TaskmillError):
    """The run was cancelled (before it ran) or stopped (while it ran). Never retried."""


class DependencyFailed(RunCancelled):
    """A run this one depends on failed for good or was cancelled, so this one never runs."""


class BatchFinished(TaskmillError, RuntimeError):
    """A run was to join a batch that has finished (its callbacks were enqueued): it would
    run outside what the callbacks reported, so it is refused and nothing is enqueued."""


class InvalidSchedule(TaskmillError, ValueError):
    """A cron expression, time zone or trigger definition that cannot work."""


def class_path(exc_type: type[BaseException]) -> str:
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def said_once(message: str, *names: str) -> str:
    """``message`` without the exception's own name in front (``"ValueError: ..."``), however
    many times it is there: a traceback's last line starts with it, and some libraries begin
    their messages with it too, which would show "ConnectionError: ConnectionError: ...".
    ``names``: the ways the class is written (its path, its name)."""
    prefixes = tuple(f"{name}: " for name in names if name)
    while prefixes and message.startswith(prefixes):
        message = next(message.removeprefix(p) for p in prefixes if message.startswith(p))
    return message


def synthetic_error(exc_type: type[BaseException], message: str) -> dict[str, str]:
    """An error entry for something that happened to a run rather than inside its task."""
    return {
        "exception_class_path": class_path(exc_type),
        "traceback": f"{exc_type.__qualname__}: {message}\n",
    }


_WORKER_LOST = class_path(WorkerLost)
# An error entry's optional third key: "lost" marks an attempt that failed through no fault of
# its task though its own exception is recorded (a transient database error in its body; see
# taskmill/worker/interruptions.py). It counts as a lost attempt, like a ``WorkerLost``.
COUNTED_AS = "counted_as"
LOST = "lost"


def counts_as_lost(error: dict[str, str]) -> bool:
    """Whether an error entry is a lost attempt: a lost worker, or the database's fault."""
    return error.get(COUNTED_AS) == LOST or error.get("exception_class_path") == _WORKER_LOST


def task_failures(errors: list[dict[str, str]]) -> int:
    """How many of the run's attempts failed by the task's own doing (lost ones excluded)."""
    return sum(1 for error in errors if not counts_as_lost(error))


def lost_attempts(errors: list[dict[str, str]]) -> int:
    return sum(1 for error in errors if counts_as_lost(error))
