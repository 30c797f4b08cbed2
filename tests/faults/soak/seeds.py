"""The seeds that found defects, kept to be replayed (docs/reliability.md lists the fixes).

``./scripts/soak --regressions`` replays each on its database, for as long as the soak ran
when it found the defect. A replay repeats the chaos and the mix, not the threads' timing:
each defect also has a deterministic test in the regular suite, named in
docs/reliability.md.

    python -m tests.faults.soak.seeds        prints "database seed seconds" lines
"""

from __future__ import annotations

# (database, seed, seconds of chaos, what it found)
REGRESSIONS: list[tuple[str, int, int, str]] = [
    ("mysql", 11, 60, "a fenced worker wrote its stopped attempts as CANCELLED or as failures"),
    ("postgresql", 11, 60, "a connection failing to open during a restart was not transient"),
    ("sqlite", 12, 60, "a worker hung for ever on SIGTERM (the signal handler's deadlock)"),
    ("sqlite", 560382930, 60, "a release kept the not-started mark: a started run seen unstarted"),
    ("sqlite", 787799521, 60, "a thawed worker started a run rescued from it as never started"),
    ("postgresql", 68081686, 60, "a stale outcome made a worker forget the newer attempt it ran"),
    (
        "mysql",
        303,
        1800,
        "a run started though its start could not be recorded; a run stopped "
        "while queued ended without its on_failure callback",
    ),
    (
        "postgresql",
        202,
        1800,
        "a stale outcome written in one batch with the newer attempt's enqueued a second callback",
    ),
    (
        "postgresql",
        416654734,
        1800,
        "a run a task thread took in the instant after a self-fence looked was written CANCELLED",
    ),
    (
        "sqlite",
        644955197,
        1800,
        "a thawed worker marked begun the start of a run rescued from it: 21 starts in a "
        "window of a 20/5s rate",
    ),
]

if __name__ == "__main__":
    for database, seed, seconds, _why in REGRESSIONS:
        print(database, seed, seconds)
