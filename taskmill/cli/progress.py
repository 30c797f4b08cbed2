"""A progress line for the long commands (``prune``, ``import-schedules``): rewritten in place
with ``\\r`` on a terminal, where it shows that a long job is alive; nothing at all in a pipe or
a log, which get the commands' usual output alone."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, OutputWrapper


def on_terminal(command: BaseCommand) -> bool:
    return bool(command.stdout.isatty())


class ProgressLine:
    def __init__(self, stdout: OutputWrapper, min_interval: float = 0.0) -> None:
        self.stdout = stdout
        # Redrawing a terminal line per row of a big job would cost more than the job.
        self.min_interval = min_interval
        self.width = 0
        self.shown_at = float("-inf")

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown_at < self.min_interval:
            return
        self.shown_at = now
        # Pad over the previous text: a shorter line would leave its tail on screen.
        self.stdout.write("\r" + text.ljust(self.width), ending="")
        self.stdout.flush()
        self.width = len(text)

    def finish(self, summary: str) -> None:
        """Replace the line with ``summary``, ended by a newline."""
        self.show(summary, force=True)
        self.stdout.write("")

    def clear(self) -> None:
        """Blank the line, so the command's usual output starts at its beginning."""
        if self.width:
            self.stdout.write("\r" + " " * self.width + "\r", ending="")
            self.stdout.flush()
            self.width = 0
