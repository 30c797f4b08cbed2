"""Tasks made by each of the three decorators on Django 6.1 with the django-tasks backport
installed too, as a Wagtail project has them (tests/test_backport_coexistence.py). Only
imported where the backport is installed."""

from __future__ import annotations

import django_tasks
from django.tasks import task as django_task

import taskmill


@django_tasks.task
def add_by_backport(a: int, b: int) -> int:
    return a + b


@django_task
def add_by_django(a: int, b: int) -> int:
    return a + b


@taskmill.task
def add_by_taskmill(a: int, b: int) -> int:
    return a + b


@django_tasks.task
async def add_by_backport_on_the_loop(a: int, b: int) -> int:
    return a + b


# taskmill's options through the backport's decorator: it hands what it does not know to
# the backend's task_class, as Django 6.1's does. A timeout runs the body in a child process.
@django_tasks.task(timeout=30, max_attempts=1)
def fail_by_backport_in_a_child(message: str) -> None:
    raise ValueError(message)


@django_task
def fail_by_django(message: str) -> None:
    raise ValueError(message)
