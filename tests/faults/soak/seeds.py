"""The seeds that found defects, kept to be replayed (docs/reliability.md lists the fixes).

``./scripts/soak --regressions`` replays each on its database (60 s of chaos, as when it
was found). A replay repeats the chaos and the mix, not the threads' timing: each defect also
has a deterministic test in the regular suite, named in docs/reliability.md.

    python -m tests.faults.soak.seeds        prints "database seed" lines
"""

from __future__ import annotations

REGRESSIONS: list[tuple[str, int, str]] = [
    ("mysql", 11, "a fenced worker wrote its stopped attempts as CANCELLED or as failures"),
    ("postgresql", 11, "a connection that failed to open during a restart was not transient"),
    ("sqlite", 12, "a worker hung for ever on SIGTERM (the signal handler's deadlock)"),
    ("sqlite", 560382930, "a release kept the not-started mark: a started run seen unstarted"),
    ("sqlite", 787799521, "a thawed worker started a run rescued from it as never started"),
    ("postgresql", 68081686, "a stale outcome made a worker forget the newer attempt it ran"),
]
SECONDS = 60

if __name__ == "__main__":
    for database, seed, _why in REGRESSIONS:
        print(database, seed)
