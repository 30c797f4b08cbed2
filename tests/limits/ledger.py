"""Reading the ledger that tests/testapp/limit_tasks.py writes: starts and ends per key."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tests.conftest import read_records


def events(record_dir: Path) -> list[tuple[float, str, str]]:
    """(time, "start" | "end", key), in time order."""
    found = []
    for line in read_records(record_dir):
        kind, key, at = line.split()
        found.append((float(at), kind, key))
    return sorted(found)


def greatest_overlap(record_dir: Path) -> dict[str, int]:
    """Per key, the most runs between their start and their end at one moment. At equal
    times an end counts before a start: a slot freed and taken at once is no overlap."""
    running: dict[str, int] = defaultdict(int)
    most: dict[str, int] = defaultdict(int)
    ordered = sorted(events(record_dir), key=lambda e: (e[0], e[1] == "start"))
    for _, kind, key in ordered:
        running[key] += 1 if kind == "start" else -1
        most[key] = max(most[key], running[key])
    return dict(most)


def starts(record_dir: Path, key: str | None = None) -> list[tuple[float, str]]:
    return [(at, k) for at, kind, k in events(record_dir) if kind == "start" and key in (None, k)]


def most_in_window(times: list[float], window: float) -> int:
    """The most starts in any half-open window (t - window, t] of the given length."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most
