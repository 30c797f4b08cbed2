"""The soak's producer: a steady, seeded mix of every kind of run, and the schedules.

What it enqueued is remembered by token (each run's first argument), so the checker can
tell a run the database lost from one that was never enqueued. An enqueue that fails on a
broken connection may still have committed: the producer looks its token up before trying
again, so its own retries never double a run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, close_old_connections, connection

from tests.testapp import soak_tasks

from .composition import ComposingProducer
from .profiles import METERED_QUEUE

TASKS = "tests.testapp.soak_tasks"

# kind -> weight in the mix. A "pair" is a run and a run that depends on it; "unique" is
# three enqueues of one key at once. The limited kinds (issue 23) come in bursts, so that
# their limits are reached and runs are held back: "keyed" is 3 runs of one of ACCOUNTS
# (one at a time each), "two" 4 runs of a task allowed two at once, "rated" 10 runs of a
# task allowed RATE (about half of it on average), "fair" a heavy or a light tenant's
# burst, "metered" 3 runs in a queue limited to 2. The composition kinds (issue 24) are
# composition.py's: a batch of 2 to 5 members, a pipeline of four steps, a snoozing task.
MIX = {
    "plain": 5.0,
    "flaky": 2.0,
    "overruns": 0.3,
    "in_child": 1.0,
    "unique": 1.0,
    "pair": 1.5,
    "callbacks": 1.0,
    "atomic": 2.0,
    "async": 1.5,
    "keyed": 1.2,
    "two": 0.6,
    "rated": 0.35,
    "fair": 0.2,
    "metered": 0.8,
    "batch": 0.4,
    "pipeline": 0.4,
    "snoozer": 0.6,
}
ACCOUNTS = ("a0", "a1", "a2", "a3")
TENANTS = ("t0", "t1", "t2")
PAUSABLE_QUEUE = "low"
PAUSE = object()  # in a burst's arguments: a pause drawn for each run


@dataclass
class Enqueued:
    token: str
    kind: str
    run_id: int
    params: dict = field(default_factory=dict)


def with_database_retries(action: Callable[[], object], deadline: float = 60.0) -> object:
    """Run ``action``; on a database error (a restart, a cut connection) reconnect and retry."""
    give_up = time.monotonic() + deadline
    delay = 0.05
    while True:
        try:
            return action()
        except DatabaseError:
            if time.monotonic() > give_up:
                raise
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class Producer(ComposingProducer):
    def __init__(self, rng: random.Random, rate: float) -> None:
        self.rng = rng
        self.rate = rate
        self.enqueued: list[Enqueued] = []
        self.lock = threading.Lock()
        self.ambiguous = 0  # enqueues that failed and were found committed anyway
        self._count = 0

    # -- one enqueue, safe to retry --------------------------------------------------------

    def _submit(self, task_path: str, token: str, enqueue: Callable[[], object]) -> int:
        from taskmill.models import Run

        give_up = time.monotonic() + 60
        delay = 0.05
        while True:
            try:
                return int(enqueue().id)
            except DatabaseError:
                connection.close()
                if time.monotonic() > give_up:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            found = with_database_retries(
                lambda: (
                    Run.objects.filter(task_path=task_path, args__0=token)
                    .order_by("-id")
                    .values_list("id", flat=True)
                    .first()
                )
            )
            if found is not None:
                self.ambiguous += 1
                return int(found)

    def _token(self, kind: str) -> str:
        self._count += 1
        return f"{kind}-{self._count}"

    def _remember(self, token: str, kind: str, run_id: int, **params: object) -> int:
        with self.lock:
            self.enqueued.append(Enqueued(token, kind, run_id, dict(params)))
        return run_id

    # -- the mix ----------------------------------------------------------------------------

    def enqueue_one(self) -> None:
        kinds, weights = zip(*MIX.items(), strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        getattr(self, f"_enqueue_{kind}")()

    def _simple(self, kind: str, task, *args: object, queue: str | None = None, **params) -> int:
        token = self._token(kind)
        bound = task.using(queue_name=queue) if queue else task
        path = f"{TASKS}.{task.func.__name__}"
        run_id = self._submit(path, token, lambda: bound.enqueue(token, *args))
        return self._remember(token, kind, run_id, **params)

    def _enqueue_plain(self) -> None:
        queue = PAUSABLE_QUEUE if self.rng.random() < 0.3 else None
        self._simple("plain", soak_tasks.plain, round(self.rng.uniform(0, 0.05), 3), queue=queue)

    def _enqueue_flaky(self) -> None:
        succeed_at = self.rng.randint(1, 3)
        self._simple("flaky", soak_tasks.flaky, succeed_at, succeed_at=succeed_at)

    def _enqueue_overruns(self) -> None:
        self._simple("overruns", soak_tasks.overruns)

    def _enqueue_in_child(self) -> None:
        self._simple("in_child", soak_tasks.in_child)

    def _enqueue_async(self) -> None:
        self._simple("async", soak_tasks.async_job)

    def _enqueue_atomic(self) -> None:
        queue = PAUSABLE_QUEUE if self.rng.random() < 0.3 else None
        pause = round(self.rng.uniform(0, 0.2), 3)
        self._simple("atomic", soak_tasks.atomic_row, pause, queue=queue)

    def _enqueue_callbacks(self) -> None:
        succeed = self.rng.random() < 0.6
        self._simple("callbacks", soak_tasks.with_callbacks, succeed, succeed=succeed)

    def _enqueue_unique(self) -> None:
        key = self._token("unique")
        path = f"{TASKS}.unique_job"
        for _ in range(3):
            run_id = self._submit(path, key, lambda: soak_tasks.unique_job.enqueue(key))
            self._remember(key, "unique", run_id)

    def _enqueue_pair(self) -> None:
        first_fails = self.rng.random() < 0.3
        if first_fails:
            first = self._simple("fails", soak_tasks.fails)
        else:
            first = self._simple("plain", soak_tasks.plain, 0.01)
        token = self._token("after")
        path = f"{TASKS}.after"
        run_id = self._submit(
            path,
            token,
            lambda: soak_tasks.after.using(depends_on=[str(first)]).enqueue(token),
        )
        self._remember(token, "after", run_id, depends_on=first)

    # -- flow control: bursts under limits ------------------------------------------------

    def _burst(self, kind: str, task, count: int, queue: str | None = None, **kwargs) -> None:
        """``count`` runs of ``task`` at once; a ``PAUSE`` keyword is drawn for each."""
        path = f"{TASKS}.{task.func.__name__}"
        bound = task.using(queue_name=queue) if queue else task
        for _ in range(count):
            token = self._token(kind)
            given = {
                name: round(self.rng.uniform(0.05, 0.4), 3) if value is PAUSE else value
                for name, value in kwargs.items()
            }
            run_id = self._submit(
                path, token, lambda token=token, given=given: bound.enqueue(token, **given)
            )
            self._remember(token, kind, run_id)

    def _enqueue_keyed(self) -> None:
        account = self.rng.choice(ACCOUNTS)
        self._burst("keyed", soak_tasks.one_per_account, 3, account=account, pause=PAUSE)

    def _enqueue_two(self) -> None:
        self._burst("two", soak_tasks.two_at_once, 4, pause=PAUSE)

    def _enqueue_rated(self) -> None:
        self._burst("rated", soak_tasks.rate_limited, 10)

    def _enqueue_fair(self) -> None:
        tenant = self.rng.choice(TENANTS)
        count = 24 if tenant == TENANTS[0] else 2  # one tenant floods, the others trickle
        self._burst("fair", soak_tasks.fair_share, count, tenant=tenant)

    def _enqueue_metered(self) -> None:
        self._burst("metered", soak_tasks.metered, 3, METERED_QUEUE, pause=PAUSE)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, until: float, stop: threading.Event) -> None:
        """Enqueue at ``rate`` per second until the monotonic time ``until``."""
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() < until:
                self.enqueue_one()
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            close_old_connections()
            connection.close()


@dataclass(frozen=True)
class SoakSchedule:
    name: str
    kind: str  # cron or interval
    start: datetime
    end: datetime
    step: timedelta

    def expected_fires(self) -> list[datetime]:
        fires, at = [], self.start
        while at <= self.end:
            fires.append(at)
            at += self.step
        return fires


def create_schedules(start: datetime, end: datetime) -> list[SoakSchedule]:
    """Per-second crons and 2-second intervals, every late fire caught up (none dropped)."""
    from taskmill.models import Schedule

    schedules = [
        SoakSchedule(f"soak-cron-{n}", "cron", start, end, timedelta(seconds=1)) for n in range(3)
    ] + [
        SoakSchedule(f"soak-every-{n}", "interval", start, end, timedelta(seconds=2))
        for n in range(3)
    ]
    Schedule.objects.bulk_create(
        [
            Schedule(
                name=schedule.name,
                task_path=f"{TASKS}.scheduled",
                kind=schedule.kind,
                cron="* * * * * *" if schedule.kind == "cron" else "",
                interval=schedule.step if schedule.kind == "interval" else None,
                start_at=start if schedule.kind == "interval" else None,
                timezone="UTC",
                end_at=end,
                misfire_policy="catch_up",
                misfire_grace=timedelta(minutes=30),
                fire_time_kwarg="fired_for",
                next_fire_at=start,
            )
            for schedule in schedules
        ]
    )
    return schedules
