"""Releasing: keys of limits that hold runs back are looked at again when their time comes,
with no run of theirs ending (a rate limit's window moving on; the backstop, should a slot
have been freed by a path that could not say so).

The worker's loop runs it, like the stager: what it lets go is work for that loop to claim.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ...limits import gate
from .base import Duty


class Releaser(Duty):
    name = "releaser"
    interval = gate.LOOK_EVERY

    def __init__(self, database: str, on_released: Callable[[], None]) -> None:
        self.database = database
        self.on_released = on_released

    def run(self, now: datetime) -> float:
        return gate.look_again(self.database, now)
