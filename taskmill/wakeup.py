"""In-process wake-ups: an enqueue wakes the workers running in the same process at once.

Other processes learn about new runs through the engine (LISTEN/NOTIFY) or by polling.
"""

from __future__ import annotations

from collections.abc import Callable

_listeners: set[Callable[[str], None]] = set()


def subscribe(callback: Callable[[str], None]) -> None:
    _listeners.add(callback)


def unsubscribe(callback: Callable[[str], None]) -> None:
    _listeners.discard(callback)


def wake_local(queue_name: str) -> None:
    for callback in tuple(_listeners):
        callback(queue_name)
