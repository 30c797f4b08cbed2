"""Sentry for taskmill's workers: ``TASKMILL_MIDDLEWARE = ["taskmill.contrib.sentry.middleware"]``.

Every attempt gets its own Sentry scope, tagged with the run (``taskmill.run_id``,
``taskmill.task``, ``taskmill.attempt``, ``taskmill.queue``, ``taskmill.worker``); a failed
attempt is reported once, grouped by task and exception, *handled* while the run will be
retried and *unhandled* on its last attempt (``TASKMILL_SENTRY_REPORT_RETRIES = "final"``
reports only those); a ``Snooze`` or a ``Cancel`` is never reported. With tracing on in the
SDK, each attempt is a ``queue.process`` transaction (a segment span on sentry-sdk 3) named
by the task's path. sentry-sdk 2 and 3 both work. See docs/observability.md.

Initialise the SDK as usual (``sentry_sdk.init`` in settings): the worker's processes,
and the child processes of tasks with a ``timeout``, import the settings too.
"""

from __future__ import annotations

from .attempts import middleware

__all__ = ["middleware"]
