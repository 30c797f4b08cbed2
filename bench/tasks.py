"""The benchmark's tasks: a no-op and a latency probe, once per system.

The probe returns the wall-clock time (``time.time()``) at which its body began, so the
stored return value says when the task really started, whatever the queue calls
``started_at`` (taskmill stamps ``started_at`` when it claims a run, which can be a little
before the run starts when the worker prefetches).
"""

import time

from django.tasks import task


# taskmill: the default TASKS backend, so @task makes taskmill Tasks (registered for its worker).
@task
def noop() -> None:
    return None


@task
def probe() -> float:
    return time.time()


# django-tasks-db: the "dtdb" alias.
@task(backend="dtdb")
def dt_noop() -> None:
    return None


@task(backend="dtdb")
def dt_probe() -> float:
    return time.time()
