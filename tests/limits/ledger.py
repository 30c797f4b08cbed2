"""Reading the ledger that tests/testapp/limit_tasks.py writes: starts and ends per key.

A line is ``<start|end> <key> <time> [<name>]``: the gated tasks name each attempt
(``name.attempt``), so that a test can follow one attempt or leave one out (a killed
attempt never ends; a fenced one ends after its slot went to another)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from pathlib import Path

from tests.conftest import read_records


def entries(record_dir: Path) -> list[tuple[float, str, str, str]]:
    """(time, "start" | "end", key, name), in time order; name is "" where not written."""
    found = []
    for line in read_records(record_dir):
        kind, key, at, *name = line.split()
        found.append((float(at), kind, key, name[0] if name else ""))
    return sorted(found)


def events(record_dir: Path) -> list[tuple[float, str, str]]:
    """(time, "start" | "end", key), in time order."""
    return [(at, kind, key) for at, kind, key, _ in entries(record_dir)]


def greatest_overlap(
    record_dir: Path,
    leave_out: Collection[str] = (),
    group: Callable[[str], str] = lambda key: key,
) -> dict[str, int]:
    """Per key, the most runs between their start and their end at one moment. At equal
    times an end counts before a start: a slot freed and taken at once is no overlap.
    ``leave_out``: attempts (by name) not counted; ``group``: the keys counted together."""
    running: dict[str, int] = defaultdict(int)
    most: dict[str, int] = defaultdict(int)
    kept = [entry for entry in entries(record_dir) if entry[3] not in leave_out]
    for _, kind, key, _ in sorted(kept, key=lambda e: (e[0], e[1] == "start")):
        key = group(key)
        running[key] += 1 if kind == "start" else -1
        most[key] = max(most[key], running[key])
    return dict(most)


def starts(record_dir: Path, key: str | None = None) -> list[tuple[float, str]]:
    return [(at, k) for at, kind, k in events(record_dir) if kind == "start" and key in (None, k)]


def started(record_dir: Path, key: str | None = None) -> list[str]:
    """The names of the attempts started (under ``key``, or any), in the order they began."""
    return [
        name for _, kind, k, name in entries(record_dir) if kind == "start" and key in (None, k)
    ]


def ended(record_dir: Path) -> list[str]:
    return [name for _, kind, _, name in entries(record_dir) if kind == "end"]


def most_in_window(times: list[float], window: float) -> int:
    """The most starts in any half-open window (t - window, t] of the given length."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most
