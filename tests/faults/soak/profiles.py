"""How long and how hard the soak runs: the CI profile and the long one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    chaos_seconds: float  # producing and breaking things
    settle_seconds: float  # afterwards: how long no run may end while some are left
    enqueue_per_second: float
    chaos_every: tuple[float, float]  # seconds between two chaos actions (uniform)
    workers: dict[str, int]  # per database vendor


CI = Profile(
    name="ci",
    # 30 s: about 25 chaos actions per database in every CI run (the suite's time budget);
    # the long profile is the one that proves the design.
    chaos_seconds=30,
    settle_seconds=90,
    enqueue_per_second=12,
    chaos_every=(0.6, 1.8),
    workers={"postgresql": 4, "mysql": 4, "sqlite": 2},
)
LONG = Profile(
    name="long",
    chaos_seconds=30 * 60,
    settle_seconds=180,
    enqueue_per_second=15,
    chaos_every=(0.6, 2.5),
    workers={"postgresql": 4, "mysql": 4, "sqlite": 2},
)
PROFILES = {profile.name: profile for profile in (CI, LONG)}

# Worker timings for the soak: short leases so that a frozen or killed worker's runs are
# rescued within seconds (a lease of 3 s: 6 heartbeats; self-fencing after 2.25 s).
WORKER_ENV = {
    "TASKMILL_TEST_HEARTBEAT": "0.5",
    "TASKMILL_TEST_LEASE": "3",
    "TASKMILL_TEST_RESCUE": "0.5",
    # On a loaded machine no scheduler may get to fire for minutes (every worker killed,
    # frozen or starting): then the default bound of 100 caught-up fires would drop some.
    "TASKMILL_TEST_CATCH_UP_LIMIT": "100000",
}
LEASE_SECONDS = 3.0

# A queue whose runs share a concurrency limit (QUEUE_LIMITS in the soak's settings).
METERED_QUEUE = "metered"
METERED_LIMIT = 2
