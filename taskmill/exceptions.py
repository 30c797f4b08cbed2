"""taskmill's errors: each is a ``TaskmillError``, and a subclass of the framework's own or
of Python's where one fits, so ``except InvalidTask`` or ``except ValueError`` still catch it.
And the two a task raises to decide its own attempt's end: ``Snooze`` and ``Cancel``."""

from __future__ import annotations

import math
from datetime import timedelta

from django.utils import timezone

from .compat import InvalidTask


class TaskmillError(Exception):
    """The base of every error taskmill raises to its users: ``except TaskmillError``
    catches them all (the exceptions of a task's own code are never wrapped in it)."""


class TaskNotRegistered(TaskmillError, InvalidTask):
    """A run names a task path that does not resolve to a registered task object.

    The worker refuses such a run (it fails, nothing is called): a database row must not be
    able to choose which code runs.
    """


class TaskAliasConflict(TaskmillError, InvalidTask):
    """A task's path or one of its ``aliases`` already names another registered task: a
    stored run must name one task, never whichever module happened to be imported first."""


class CorruptRun(TaskmillError, InvalidTask):
    """A claimed run's row holds what taskmill never writes (arguments that are not a list,
    a JSON column that is not JSON...): the worker fails the run without calling anything."""


class InvalidTaskArguments(TaskmillError, InvalidTask, TypeError):
    """The arguments, or the metadata given with ``.using(metadata=...)``, cannot be stored
    as JSON. (A return value that cannot fails its run with a plain ``TypeError``, which is
    what Django's own backends record.)"""


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


class Cancel(RunCancelled):
    """Raised by a task: ``raise taskmill.Cancel("no longer needed")`` ends its run CANCELLED,
    never retried whatever its ``max_attempts``. The reason is recorded as
    ``taskmill.cancel()`` records one (a ``RunCancelled`` entry); its ``on_failure`` callback
    and its dependents follow as for any cancel. A ``RunCancelled``, so every path that knows
    a cancel is final knows this one is."""

    def __init__(self, reason: str = "cancelled by its task") -> None:
        if not isinstance(reason, str):
            raise TypeError(f"Cancel takes a reason as text, not {reason!r}.")
        super().__init__(reason)
        self.reason = reason


class Snooze(Exception):
    """Raised by a task: ``raise taskmill.Snooze(60)`` ends this attempt and puts the run back
    READY, due ``delay`` (seconds, or a timedelta) after the attempt ended. "Not now, try
    again later": no error is written, no attempt of ``max_attempts`` used, and the retry
    backoff never hears of it. The attempt number still moves on (it is the fencing token);
    ``Run.snoozes`` counts them, up to the task's ``max_snoozes``. Not a ``TaskmillError``:
    nothing went wrong.

    A plain ``Exception``, as a task's own exceptions are: a bare ``except Exception`` in the
    task between the ``raise`` and the worker swallows it, as it would any other.
    """

    def __init__(self, delay: float | int | timedelta) -> None:
        self.delay = snooze_delay(delay)
        super().__init__(f"snoozed for {self.delay.total_seconds():g}s")


class TooManySnoozes(TaskmillError):
    """A run asked to snooze past its task's ``max_snoozes``: it fails, for good, rather than
    come back for ever."""


def snooze_delay(delay: object) -> timedelta:
    """``Snooze``'s delay as a timedelta; a clear ``ValueError``/``TypeError`` for one that
    cannot be (raised where the task snoozes, so its traceback points at that line)."""
    if isinstance(delay, timedelta):
        value = delay
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        if not math.isfinite(delay):
            raise ValueError(f"Snooze delay must be a finite number of seconds, not {delay!r}.")
        try:
            value = timedelta(seconds=delay)
        except OverflowError:
            raise ValueError(f"Snooze delay of {delay!r} seconds is too long.") from None
    else:
        raise TypeError(f"Snooze takes seconds or a timedelta, not {delay!r}.")
    if value < timedelta(0):
        raise ValueError(f"Snooze delay must not be negative, not {delay!r}.")
    try:
        timezone.now() + value
    except OverflowError:  # the run could never be due: say so now, not at the write
        raise ValueError(f"Snooze delay of {value} ends past the year 9999.") from None
    return value


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
