"""Worker middleware: code that wraps every attempt, shaped like Django's.

``TASKMILL_MIDDLEWARE`` lists import paths of factories, outermost first. Each factory is
called once per worker process (per kind of task, sync and async) with ``call_next`` and
returns the callable that takes the attempt's context::

    def timing(call_next):
        def middleware(context):
            started = time.monotonic()
            try:
                return call_next(context)
            finally:
                log(context.task_result.task.name, time.monotonic() - started)
        return middleware

The context is the one a ``takes_context`` task gets (``taskmill.worker.TaskContext``, a
Django ``TaskContext``): the run's id and task in ``context.task_result``, its attempt in
``context.attempt``, its queue in ``context.task_result.task.queue_name``, its metadata in
``context.metadata``, whether or not the task itself takes a context. What ``call_next``
returns is the task's return value (a middleware may change it); what it raises is the
task's exception, the attempt's failure unless the middleware handles it (a ``Snooze`` and
a ``Cancel`` travel the same way). What a middleware raises fails the attempt like the
task's own exception, for the same retry settings.

Async tasks (``async def``) run on the worker's event loop: there ``call_next`` is a
coroutine function, and the factory must return one too. A middleware for both kinds checks
which it was given, as Django's own middleware does::

    from asgiref.sync import iscoroutinefunction

    def timing(call_next):
        if iscoroutinefunction(call_next):
            async def middleware(context):
                ...
                return await call_next(context)
        else:
            def middleware(context):
                ...
                return call_next(context)
        return middleware

A factory that returns a sync callable for an async task is refused when the worker first
runs an async task (``ImproperlyConfigured``), and a bad path by the system check
``taskmill.E008`` at start-up. With no middleware (the default) attempts pay nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import setting

if TYPE_CHECKING:
    from .worker.execution import TaskContext

SETTING = "TASKMILL_MIDDLEWARE"

Handler = Callable[["TaskContext"], Any]
Factory = Callable[[Handler], Handler]

_lock = threading.Lock()
# (the setting's value, the sync chain, the async chain): built once per process.
_built: dict[str, Any] = {"setting": None, "sync": None, "async": None}


def _factories(paths: Any) -> list[tuple[str, Factory]]:
    """The factories ``paths`` name, checked: a list or tuple of import paths."""
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, str) for p in paths):
        raise ImproperlyConfigured(
            f"{SETTING} must be a list of import paths of middleware factories, not {paths!r}."
        )
    found = []
    for path in paths:
        try:
            factory = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{SETTING}: {path!r} cannot be imported: {exc}") from exc
        if not callable(factory):
            raise ImproperlyConfigured(f"{SETTING}: {path!r} is not callable: {factory!r}.")
        found.append((path, factory))
    return found


def _call_body(context: TaskContext) -> Any:
    """The innermost handler of a sync chain: the task's own call."""
    return context._run_body()


async def _await_body(context: TaskContext) -> Any:
    """The innermost handler of an async chain."""
    return await context._run_body()


def _chain(paths: Any, asynchronous: bool) -> Handler | None:
    """The handlers of ``paths`` wrapped around the task's call, or None for no middleware."""
    factories = _factories(paths)
    if not factories:
        return None
    handler: Handler = _await_body if asynchronous else _call_body
    for path, factory in reversed(factories):
        wrapped = factory(handler)
        if not callable(wrapped):
            raise ImproperlyConfigured(
                f"{SETTING}: {path!r} returned {wrapped!r}, not a callable taking the context."
            )
        if asynchronous and not iscoroutinefunction(wrapped):
            raise ImproperlyConfigured(
                f"{SETTING}: {path!r} returned a sync callable for an async task: when "
                "call_next is a coroutine function (asgiref.sync.iscoroutinefunction), "
                "return an async one (see taskmill.middleware)."
            )
        if not asynchronous and iscoroutinefunction(wrapped):
            raise ImproperlyConfigured(
                f"{SETTING}: {path!r} returned a coroutine function for a sync task: when "
                "call_next is a plain function, return a plain one."
            )
        handler = wrapped
    return handler


def chain(asynchronous: bool) -> Handler | None:
    """This process's chain for sync or async tasks (None: no middleware), built on first
    use and again when the setting changes (tests)."""
    paths = setting(SETTING)
    kind = "async" if asynchronous else "sync"
    built = _built
    if built["setting"] is paths and built[kind] is not None:
        return built[kind][0]
    with _lock:
        if built["setting"] is not paths:
            built.update(setting=paths, sync=None, **{"async": None})
        if built[kind] is None:
            built[kind] = (_chain(paths, asynchronous),)
        return built[kind][0]


def call_sync(context: TaskContext, body: Callable[[], Any]) -> Any:
    """Run a sync task's ``body`` through the middleware."""
    handler = chain(asynchronous=False)
    if handler is None:
        return body()
    context._attach_body(body)
    return handler(context)


async def call_async(context: TaskContext, body: Callable[[], Awaitable[Any]]) -> Any:
    """Await an async task's ``body`` through the middleware."""
    handler = chain(asynchronous=True)
    if handler is None:
        return await body()
    context._attach_body(body)
    return await handler(context)


def configured() -> bool:
    """Whether any middleware is set (the attempt builds a context for it then)."""
    return bool(setting(SETTING))


def check_setting(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``taskmill.E008``: a path that is not a middleware factory, said at start-up."""
    from django.core import checks

    try:
        _factories(setting(SETTING))
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint='For example TASKMILL_MIDDLEWARE = ["myproject.tasks.timing"].',
                id="taskmill.E008",
            )
        ]
    return []


__all__ = ["call_async", "call_sync", "chain", "check_setting", "configured"]
