"""Worker middleware for tests/test_middleware.py: each records, around every attempt, what
it saw of the run (TASKMILL_TEST_MIDDLEWARE in a worker's environment lists them)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction

from .tasks import _record


def _seen(name: str, when: str, context: Any) -> None:
    result = context.task_result
    metadata = context.metadata.get("tenant", "-")
    _record(
        f"mw {name} {when} {result.id} {context.attempt} {result.task.queue_name} "
        f"{result.task.name} {metadata}"
    )


def _recording(name: str):
    def factory(call_next):
        if iscoroutinefunction(call_next):

            async def middleware(context):
                _seen(name, "before", context)
                try:
                    value = await call_next(context)
                except Exception as exc:
                    _seen(name, f"raised:{type(exc).__name__}", context)
                    raise
                _seen(name, "after", context)
                return value

        else:

            def middleware(context):
                _seen(name, "before", context)
                try:
                    value = call_next(context)
                except Exception as exc:
                    _seen(name, f"raised:{type(exc).__name__}", context)
                    raise
                _seen(name, "after", context)
                return value

        return middleware

    return factory


outer = _recording("outer")
inner = _recording("inner")


def _doubled(context: Any, value: Any) -> Any:
    return value * 2 if context.task_result.task.name in ("add", "async_add") else value


def doubling(call_next):
    """Doubles what an ``add`` returns: a middleware may change the result."""
    if iscoroutinefunction(call_next):

        async def middleware(context):
            return _doubled(context, await call_next(context))

    else:

        def middleware(context):
            return _doubled(context, call_next(context))

    return middleware


def sync_only(call_next):
    """Wrong for async tasks: a plain function whatever call_next is."""

    def middleware(context):
        return call_next(context)

    return middleware
