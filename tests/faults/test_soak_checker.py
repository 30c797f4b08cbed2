"""The soak's checker catches what it claims to catch: a soak that cannot fail proves nothing.

Each case builds, in the test database and a side-effect log, the trace one defect would
leave (an attempt run twice, a run gone, a run left RUNNING, an atomic row written twice, a
callback missing, a schedule that skipped a second, a limit exceeded, a slot leaked) and
asserts the checker counts it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from taskmill.models import Batch, Queue, Run, Schedule
from tests.faults.soak.checker import check
from tests.faults.soak.flow import leaks
from tests.faults.soak.producer import Enqueued, SoakSchedule, create_schedules
from tests.faults.soak.watch import FlowWatch
from tests.testapp import soak_tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db


def finish(result, status: str = "SUCCESSFUL", attempt: int = 1, **fields) -> int:
    run_id = int(result.id)
    values = {"return_value": result.args[0]} if status == "SUCCESSFUL" else {}
    workers = [f"worker-{n}" for n in range(attempt)]
    Run.objects.filter(pk=run_id).update(
        status=status, attempt=attempt, worker_ids=workers, **{**values, **fields}
    )
    return run_id


def log(record_dir, *lines: str) -> None:
    with open(record_dir / "1.log", "a") as handle:
        handle.write("".join(f"{line}\n" for line in lines))


def test_a_clean_history_passes(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0))
    log(record_dir, f"start {run_id} 1 plain", f"end {run_id} 1")
    report = check(record_dir, [Enqueued("plain-1", "plain", run_id)], set(), [])
    assert report.ok, report.problems


def test_an_attempt_run_twice_is_doubled(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0))
    log(record_dir, *[f"start {run_id} 1 plain", f"end {run_id} 1"] * 2)
    report = check(record_dir, [Enqueued("plain-1", "plain", run_id)], set(), [])
    assert report.doubled == 2  # the same attempt twice, and more runs than errors explain
    assert not report.ok


def test_a_second_attempt_needs_an_error_that_explains_it(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0), attempt=2)
    log(record_dir, f"start {run_id} 1 plain", f"start {run_id} 2 plain", f"end {run_id} 2")
    assert check(record_dir, [], set(), []).doubled == 1
    lost = {"exception_class_path": "taskmill.exceptions.WorkerLost", "traceback": "lost\n"}
    Run.objects.filter(pk=run_id).update(errors=[lost])
    report = check(record_dir, [], set(), [])
    assert report.ok, report.problems
    assert report.crashed_runs == 1


def test_a_run_gone_is_lost_and_a_run_left_running_is_stuck(record_dir):
    gone = Enqueued("plain-9", "plain", 999_999)
    running = soak_tasks.plain.enqueue("plain-2", 0)
    Run.objects.filter(pk=running.id).update(status="RUNNING", attempt=1)
    report = check(record_dir, [gone], set(), [])
    assert (report.lost, report.stuck) == (1, 1)


def test_a_wrong_end_state_is_caught_unless_the_soak_cancelled_it(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0), status="CANCELLED")
    assert check(record_dir, [], set(), []).wrong == 1
    assert check(record_dir, [], {run_id}, []).ok


def test_atomic_rows_must_exist_exactly_once(record_dir):
    twice = finish(soak_tasks.atomic_row.enqueue("atomic-1", 0))
    never = finish(soak_tasks.atomic_row.enqueue("atomic-2", 0))
    Effect.objects.bulk_create([Effect(name=f"soak-{twice}"), Effect(name=f"soak-{twice}")])
    log(record_dir, *(f"{word} {run} 1 atomic" for run in (twice, never) for word in ("start",)))
    log(record_dir, f"end {twice} 1", f"end {never} 1")
    report = check(record_dir, [], set(), [])
    assert (report.doubled, report.lost) == (1, 1)


def test_a_finished_run_must_have_enqueued_its_callback_once(record_dir):
    run_id = finish(soak_tasks.with_callbacks.enqueue("callbacks-1", True))
    log(record_dir, f"start {run_id} 1 with_callbacks", f"end {run_id} 1")
    assert check(record_dir, [], set(), []).lost == 1
    soak_tasks.callback_ok.enqueue(str(run_id))
    soak_tasks.callback_ok.enqueue(str(run_id))
    Run.objects.filter(task_path__endswith="callback_ok").update(status="SUCCESSFUL")
    assert check(record_dir, [], set(), []).doubled == 1


def test_a_finished_batch_must_fire_each_of_its_callbacks_once(record_dir):
    batch = Batch.objects.create(
        description="batch-1", backend="default", created_at=timezone.now(), sealed=True
    )
    members = [
        soak_tasks.batch_member.enqueue("batch-1.0", "ok"),
        soak_tasks.batch_member.enqueue("batch-1.1", "fails"),
    ]
    Run.objects.filter(pk__in=[int(m.id) for m in members]).update(batch_id=batch.pk)
    finish(members[0])
    error = {"exception_class_path": "builtins.ValueError", "traceback": "ValueError\n"}
    finish(members[1], status="FAILED", attempt=3, errors=[error] * 3)
    Batch.objects.filter(pk=batch.pk).update(total=2, succeeded=1, failed=1)
    # Every member ended and the batch never finished: its callbacks are missing.
    assert check(record_dir, [], set(), []).callback_missing == 1
    Batch.objects.filter(pk=batch.pk).update(finished_at=timezone.now())
    report = check(record_dir, [], set(), [])
    assert (report.callback_missing, report.batches) == (2, 1)  # on_finish, on_failure
    for callback in (soak_tasks.batch_finished, soak_tasks.batch_failed, soak_tasks.batch_failed):
        finish(callback.enqueue(str(batch.pk)))
    report = check(record_dir, [], set(), [])
    assert (report.callback_missing, report.callback_doubled) == (0, 1)
    wrong = report.wrong  # (the runs here logged no end: those count apart)
    # on_success of a batch with a failed member, and counts that do not match its members
    succeeded = finish(soak_tasks.batch_succeeded.enqueue(str(batch.pk)))
    log(record_dir, f"start {succeeded} 1 batch_succeeded", f"end {succeeded} 1")
    Batch.objects.filter(pk=batch.pk).update(succeeded=2, failed=0)
    assert check(record_dir, [], set(), []).wrong == wrong + 2


def test_a_snooze_explains_an_extra_start_and_an_unsealed_empty_batch_is_an_orphan(record_dir):
    run_id = finish(soak_tasks.snoozer.enqueue("snoozer-1", 1), attempt=2, snoozes=1)
    log(record_dir, *(f"{word} {run_id} {n} snoozer" for n in (1, 2) for word in ("start",)))
    log(record_dir, f"end {run_id} 1", f"end {run_id} 2")
    Batch.objects.create(description="batch-2", backend="default", created_at=timezone.now())
    report = check(record_dir, [], set(), [])
    assert report.ok, report.problems
    assert (report.orphan_batches, report.batches) == (1, 0)
    Run.objects.filter(pk=run_id).update(snoozes=0)
    assert check(record_dir, [], set(), []).doubled == 1


def test_every_fire_time_must_be_enqueued_once(record_dir):
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=10)
    schedules = create_schedules(start, start + timedelta(seconds=3))
    cron = schedules[0]
    assert isinstance(cron, SoakSchedule) and len(cron.expected_fires()) == 4
    row = Schedule.objects.get(name=cron.name)
    for at in cron.expected_fires()[:3]:  # the last second never fired
        Run.objects.create(
            task_path=row.task_path, args=[], kwargs={}, status="SUCCESSFUL", schedule=row,
            scheduled_for=at, queue_name="default", backend="default", enqueued_at=at,
            available_at=at,
        )  # fmt: skip
    report = check(record_dir, [], set(), [cron])
    assert report.missing_fires == 1 and report.double_fires == 0


def test_a_run_failed_by_a_database_error_is_lost_unless_counted_as_a_lost_attempt(record_dir):
    run_id = finish(soak_tasks.plain.enqueue("plain-1", 0), status="FAILED")
    log(record_dir, f"start {run_id} 1 plain")
    outage = {
        "exception_class_path": "django.db.utils.OperationalError",
        "traceback": "django.db.utils.OperationalError: server closed the connection\n",
    }
    # The restart failed it for good: the database's outage, a run lost.
    Run.objects.filter(pk=run_id).update(errors=[outage])
    report = check(record_dir, [], set(), [])
    assert report.lost == 1 and not report.ok, report.problems
    assert "FAILED by a database error" in report.problems[0]
    # A failing kind's run too: its own error must be what failed it.
    fails = finish(soak_tasks.fails.enqueue("fails-1"), status="FAILED", errors=[outage])
    log(record_dir, f"start {fails} 1 fails", f"end {fails} 1")
    assert check(record_dir, [], set(), []).lost == 2
    Run.objects.filter(pk=fails).delete()
    # Counted as lost attempts, up to the limit, it gave up by design, as after lost workers.
    lost = {**outage, "counted_as": "lost"}
    Run.objects.filter(pk=run_id).update(errors=[lost] * 3, attempt=3, worker_ids=["w"] * 3)
    log(record_dir, f"start {run_id} 2 plain", f"start {run_id} 3 plain")
    report = check(record_dir, [], set(), [])
    assert report.ok, report.problems
    assert (report.gave_up, report.crashed_runs) == (1, 1)


# -- flow control: limit exceeded, slot leaked -------------------------------------------------


def body(record_dir, run_id: int, key: str, start: float, end: float | None, attempt: int = 1):
    """A limited task's lines, as soak_tasks._limited writes them (no end: killed)."""
    kind = key.partition(":")[0]
    lines = [f"start {run_id} {attempt} {kind} {key} {start:.6f}"]
    if end is not None:
        lines.append(f"end {run_id} {attempt} {key} {end:.6f}")
    log(record_dir, *lines)


LOST = {"exception_class_path": "taskmill.exceptions.WorkerLost", "traceback": "lost\n"}


def keyed(account: str = "a0", *, attempt: int = 1) -> int:
    """A run of one_per_account, SUCCESSFUL at ``attempt``, each earlier one lost."""
    result = soak_tasks.one_per_account.enqueue("keyed-1", account=account, pause=0)
    return finish(result, attempt=attempt, errors=[LOST] * (attempt - 1))


def test_bodies_within_their_limits_pass(record_dir):
    one, two = keyed(), keyed()
    body(record_dir, one, "one_per_account:a0", 100.0, 101.0)
    body(record_dir, two, "one_per_account:a0", 101.0, 102.0)  # the freed slot, taken at once
    other = keyed("a1")
    body(record_dir, other, "one_per_account:a1", 100.5, 101.5)  # another key: its own slot
    pair = [finish(soak_tasks.two_at_once.enqueue("two-1", 0)) for _ in range(3)]
    for n, run_id in enumerate(pair):
        body(record_dir, run_id, "two_at_once", 100.0 + n, 101.5 + n)  # two at once at most
    for n in range(40):  # 20 starts in every 5 s, the most the rate allows
        run_id = finish(soak_tasks.rate_limited.enqueue(f"rated-{n}"))
        body(record_dir, run_id, "rate_limited", 100.0 + n * 0.25, 100.0 + n * 0.25)
    report = check(record_dir, [], set(), [])
    assert report.ok, report.problems
    assert report.flow_peaks == {"one_per_account": 1, "two_at_once": 2}


def test_two_bodies_of_one_key_at_once_exceed_its_limit(record_dir):
    one, two = keyed(), keyed()
    body(record_dir, one, "one_per_account:a0", 100.0, 101.0)
    body(record_dir, two, "one_per_account:a0", 100.9, 102.0)
    report = check(record_dir, [], set(), [])
    assert report.limit_exceeded == 1 and not report.ok
    assert f"runs {[one, two]}" in report.problems[0]


def test_more_starts_in_a_window_than_the_rate_exceed_it(record_dir):
    for n in range(21):  # 21 starts in 5 s: the 21st is one too many
        run_id = finish(soak_tasks.rate_limited.enqueue(f"rated-{n}"))
        body(record_dir, run_id, "rate_limited", 100.0 + n * 0.2, 100.0 + n * 0.2)
    report = check(record_dir, [], set(), [])
    assert report.limit_exceeded == 1, report.problems
    assert "21 starts in the 5s to 104.000 (rate 20/5s)" in report.problems[0]
    assert report.flow_exceeded == {"rated bodies begun": 1}


def test_a_start_a_freeze_delayed_counts_at_its_claim_as_the_gate_counted_it(record_dir):
    for n in range(20):
        run_id = finish(soak_tasks.rate_limited.enqueue(f"rated-{n}"))
        body(record_dir, run_id, "rate_limited", 100.0 + n * 0.2, 100.0 + n * 0.2)
    late = finish(soak_tasks.rate_limited.enqueue("rated-late"))
    body(record_dir, late, "rate_limited", 104.5, 104.5)  # the 21st start in 5 s...
    watch = FlowWatch(claimed={(late, 1): 94.0})  # ...claimed 10 s before it began
    assert check(record_dir, [], set(), [], watch).limit_exceeded == 1  # a backlog: counted
    frozen = [(95.0, 104.0, 1)]  # its worker (1.log: pid 1) frozen meanwhile
    report = check(record_dir, [], set(), [], watch, frozen)
    assert report.ok, report.problems
    assert report.flow_counted_at_claim == 1
    assert check(record_dir, [], set(), [], watch, [(95.0, 104.0, 2)]).limit_exceeded == 1
    # The gate recorded its beginning: still its run's attempt, counted where it began.
    recorded = FlowWatch(
        claimed={(late, 1): 94.0},
        ledger={1: (f"rate:{soak_tasks.rate_limited.module_path}", 104.51)},
    )
    assert check(record_dir, [], set(), [], recorded, frozen).limit_exceeded == 1
    # A database restart moves nothing: the worker writes the beginning once the database
    # is back, and the gate counts the start there, as the checker does.
    assert check(record_dir, [], set(), [], watch, [(95.0, 104.0, None)]).limit_exceeded == 1


def test_more_starts_than_the_rate_recorded_by_the_gate_exceed_it(record_dir):
    key = f"rate:{soak_tasks.rate_limited.module_path}"
    # 20 at most in any 5.25 s (the gate's window: the rate's and its margin for the wait
    # from claim to start)
    ledger = {n: (key, 100.0 + n * 0.25) for n in range(20)}
    ledger[20] = (key, 105.25)
    assert check(record_dir, [], set(), [], FlowWatch(ledger=ledger)).ok
    ledger[21] = (key, 104.9)
    report = check(record_dir, [], set(), [], FlowWatch(ledger=ledger))
    assert report.limit_exceeded == 2  # at 104.9 and again at 105.25
    assert "the gate recorded 21 starts in the 5.25s to 104.900" in report.problems[0]


def test_a_lost_body_holds_its_slot_until_the_database_gave_it_back(record_dir):
    # Attempt 1 was frozen: its body went on to 110 though its run was rescued (attempt 2).
    # The watch last saw it RUNNING at 103, its lease ending at 104: its slot was given back
    # no sooner than 104. A run of its key may start after that, not before.
    frozen = keyed(attempt=2)
    body(record_dir, frozen, "one_per_account:a0", 100.0, 110.0)
    body(record_dir, frozen, "one_per_account:a0", 105.0, 106.0, attempt=2)
    killed = keyed("a1", attempt=2)  # killed mid-body: no end
    body(record_dir, killed, "one_per_account:a1", 100.0, None)
    body(record_dir, killed, "one_per_account:a1", 104.5, 105.0, attempt=2)
    watch = FlowWatch(seen={(frozen, 1): (103.0, 104.0), (killed, 1): (104.0, 104.2)})
    report = check(record_dir, [], set(), [], watch)
    assert report.ok, report.problems
    # Seen holding its slot later than the next body's start: that one started too early.
    watch.seen[(frozen, 1)] = (105.5, 106.0)
    watch.seen[(killed, 1)] = (104.8, 104.9)
    report = check(record_dir, [], set(), [], watch)
    assert report.limit_exceeded == 2, report.problems


def test_a_body_begun_after_its_slot_was_given_back_is_fencings_not_the_limits(record_dir):
    # A thawed worker began attempt 1 after its run was rescued and run again (attempt 2):
    # the limit's slot had gone to attempt 2; the doubled column judges attempt 1.
    run_id = keyed(attempt=2)
    body(record_dir, run_id, "one_per_account:a0", 106.0, 107.0)
    body(record_dir, run_id, "one_per_account:a0", 105.0, 108.0, attempt=2)
    watch = FlowWatch(seen={(run_id, 1): (101.0, 102.0)})
    report = check(record_dir, [], set(), [], watch)
    assert report.ok, report.problems


def test_a_slot_blocked_longer_than_a_lease_is_leaked_unless_a_freeze_explains_it():
    blocked = frozenset({"held:concurrency:x"})
    samples = [(100.0 + n * 0.3, blocked) for n in range(15)]  # 4.2 s
    assert [what for what, _, _ in leaks(samples, [])] == ["held:concurrency:x"]
    assert leaks(samples, [(101.0, 103.0)]) == []  # 2.2 s once the freeze is left out
    assert leaks(samples[:10], []) == []  # 2.7 s: within a lease
    # Blocked in one reading out of two: no slot stayed blocked.
    flickering = [(at, blocked if n % 2 else frozenset()) for n, (at, _) in enumerate(samples)]
    assert leaks(flickering, []) == []


def test_the_watchs_leaks_and_what_is_left_held_at_the_end_count(record_dir):
    samples = [(100.0 + n, frozenset({"queue:metered"})) for n in range(5)]
    report = check(record_dir, [], set(), [], FlowWatch(samples=samples))
    assert report.slot_leaked == 1 and not report.ok
    # At the end: a run still held back (stuck, and its key's slot leaked), a queue still
    # marked at its limit.
    held = soak_tasks.one_per_account.enqueue("keyed-1", account="a0", pause=0)
    Run.objects.filter(pk=held.id).update(due=False, held_by="concurrency:x")
    Queue.objects.create(name="metered", at_limit=True)
    report = check(record_dir, [], set(), [])
    assert (report.stuck, report.slot_leaked) == (1, 2), report.problems
    assert "held back by concurrency:x" in " ".join(report.problems)
