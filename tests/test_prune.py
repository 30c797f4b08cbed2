"""Pruning finished runs: the worker's pruner duty and ``manage.py taskmill prune``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from taskmill.models import Run, RunDependency, Schedule, Worker
from taskmill.pruning import prune_runs
from taskmill.scheduler import firing
from taskmill.worker.duties.pruner import BACKLOG_INTERVAL, MAX_BATCHES_PER_PASS, Pruner
from tests.conftest import held_by_another_transaction
from tests.testapp import scheduled_tasks, tasks

pytestmark = pytest.mark.django_db

PAST = timedelta(minutes=5)


def make_runs(
    count: int,
    status: str = "SUCCESSFUL",
    *,
    finished_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> list[int]:
    """``count`` runs set to ``status``; finished ones finished ``finished_at`` (now)."""
    ids = [int(result.id) for result in tasks.noop.enqueue_many([((), {})] * count)]
    fields: dict[str, object] = {"status": status, "expires_at": expires_at}
    if status in ("SUCCESSFUL", "FAILED", "CANCELLED"):
        fields["finished_at"] = finished_at or timezone.now()
    Run.objects.filter(pk__in=ids).update(**fields)
    return ids


def remaining(ids: list[int]) -> set[int]:
    return set(Run.objects.filter(pk__in=ids).values_list("pk", flat=True))


def prune(*args: str) -> str:
    out = StringIO()
    call_command("taskmill", "prune", *args, stdout=out)
    return out.getvalue()


# -- the pruner duty ---------------------------------------------------------------------


def test_the_pruner_deletes_only_expired_finished_runs():
    now = timezone.now()
    expired = [
        *make_runs(2, "SUCCESSFUL", expires_at=now - PAST),
        *make_runs(2, "FAILED", expires_at=now - PAST),
        *make_runs(1, "CANCELLED", expires_at=now),  # expires_at <= now is expired
    ]
    kept = [
        *make_runs(2, "SUCCESSFUL", expires_at=now + PAST),  # not yet
        *make_runs(2, "FAILED"),  # no TTL: kept forever
        # Active runs carrying a stale expires_at (a retry, a bug): never pruned.
        *make_runs(1, "READY", expires_at=now - PAST),
        *make_runs(1, "RUNNING", expires_at=now - PAST),
        *make_runs(1, "WAITING", expires_at=now - PAST),
    ]
    pruner = Pruner("default")
    assert pruner.name == "pruner" and pruner.interval == 60.0
    assert pruner.run(now) == 60.0  # no backlog: the next pass after the interval
    assert remaining(expired) == set()
    assert remaining(kept) == set(kept)
    assert pruner.pruned == 5


@override_settings(TASKMILL_PRUNE_BATCH=2, TASKMILL_PRUNE_INTERVAL=30.0)
def test_a_pass_is_bounded_and_the_next_one_continues_sooner():
    now = timezone.now()
    bound = 2 * MAX_BATCHES_PER_PASS
    ids = make_runs(bound + 5, expires_at=now - PAST)
    pruner = Pruner("default")
    with CaptureQueriesContext(connection) as queries:
        next_pass = pruner.run(now)
    assert len(remaining(ids)) == 5
    # A full pass means a backlog: the next comes sooner than the configured interval.
    assert next_pass == BACKLOG_INTERVAL
    picks = [q["sql"] for q in queries if "LIMIT 2" in q["sql"] and "DELETE" not in q["sql"]]
    assert len(picks) == MAX_BATCHES_PER_PASS
    if connection.features.has_select_for_update_skip_locked:
        assert all("SKIP LOCKED" in sql for sql in picks)
    assert pruner.run(now) == 30.0
    assert remaining(ids) == set()
    assert pruner.pruned == bound + 5 and pruner.interval == 30.0


def test_dependency_rows_go_with_their_runs():
    now = timezone.now()
    first, second = make_runs(2, expires_at=now - PAST)
    (unexpired,) = make_runs(1, expires_at=now + PAST)
    (waiting,) = make_runs(1, "WAITING")
    RunDependency.objects.create(run_id=second, depends_on_id=first)
    RunDependency.objects.create(run_id=waiting, depends_on_id=first)  # pruned dependency
    RunDependency.objects.create(run_id=second, depends_on_id=unexpired)  # pruned dependent
    RunDependency.objects.create(run_id=waiting, depends_on_id=unexpired)
    Pruner("default").run(now)
    assert remaining([first, second, unexpired, waiting]) == {unexpired, waiting}
    assert list(RunDependency.objects.values_list("run_id", "depends_on_id")) == [
        (waiting, unexpired)
    ]


def test_the_pruner_deletes_the_rows_of_stopped_and_long_silent_workers():
    now = timezone.now()

    def worker(name: str, state: str, heartbeat: datetime) -> None:
        Worker.objects.create(
            id=name, host="h", pid=1, started_at=heartbeat, last_heartbeat_at=heartbeat, state=state
        )

    worker("live", "running", now)
    worker("stopping", "stopping", now - timedelta(minutes=1))
    worker("quiet-for-hours", "running", now - timedelta(hours=20))
    worker("stopped", "stopped", now)
    worker("dead", "running", now - timedelta(days=1, seconds=1))
    worker("dead-stopping", "stopping", now - timedelta(days=3))
    Pruner("default").run(now)
    assert set(Worker.objects.values_list("pk", flat=True)) == {
        "live",
        "stopping",
        "quiet-for-hours",
    }


def test_pruning_a_scheduled_run_never_fires_its_time_again():
    start = datetime(2027, 3, 1, tzinfo=UTC)
    schedule = Schedule(
        name="prune-me",
        task_path=f"{scheduled_tasks.__name__}.heartbeat",
        kind="interval",
        interval=timedelta(hours=1),
        timezone="UTC",
    )
    schedule.full_clean()
    schedule.save()
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=start)
    firing.tick(now=start)
    Run.objects.filter(schedule=schedule).update(
        status="SUCCESSFUL", finished_at=start, expires_at=start
    )
    Pruner("default").run(start + PAST)
    assert not Run.objects.filter(schedule=schedule).exists()
    firing.tick(now=start + PAST)
    assert not Run.objects.exists()
    assert Schedule.objects.get(pk=schedule.pk).next_fire_at == start + timedelta(hours=1)


@pytest.mark.django_db(transaction=True)
def test_rows_another_transaction_holds_are_skipped_not_waited_for():
    if not connection.features.has_select_for_update_skip_locked:
        pytest.skip("SQLite has no row locks: one writer at a time")
    now = timezone.now()
    ids = make_runs(6, expires_at=now - PAST)
    held, free = ids[:3], ids[3:]
    with held_by_another_transaction(
        lambda: list(Run.objects.select_for_update().filter(pk__in=held)), locked_within=10
    ):
        started = time.monotonic()
        assert prune_runs("default", expired_before=now, batch_size=2) == 3
        assert time.monotonic() - started < 5
        assert remaining(ids) == set(held)
    assert prune_runs("default", expired_before=now, batch_size=2) == 3
    assert remaining(free + held) == set()


def test_prune_runs_refuses_active_statuses_and_a_missing_cut_off():
    with pytest.raises(ValueError, match="finished"):
        prune_runs("default", expired_before=timezone.now(), statuses=["READY"], batch_size=5)
    with pytest.raises(ValueError, match="expired_before or finished_before"):
        prune_runs("default", batch_size=5)


# -- manage.py taskmill prune ------------------------------------------------------------


def test_the_command_deletes_expired_runs_by_default():
    now = timezone.now()
    expired = make_runs(3, expires_at=now - PAST)
    kept = make_runs(2, finished_at=now - timedelta(days=30))  # old, but no TTL
    assert prune("--batch-size", "2") == "Deleted 3 finished runs.\n"
    assert remaining(expired + kept) == set(kept)
    assert prune() == "Deleted 0 finished runs.\n"


def test_older_than_deletes_by_finish_time_whatever_the_ttl():
    now = timezone.now()
    old = [
        *make_runs(2, finished_at=now - timedelta(days=8)),
        *make_runs(1, "FAILED", finished_at=now - timedelta(days=9), expires_at=now + PAST),
    ]
    recent = make_runs(2, finished_at=now - timedelta(days=6))
    # An active run with an old finished_at (say, retried): never pruned.
    (retried,) = make_runs(1, "READY")
    Run.objects.filter(pk=retried).update(finished_at=now - timedelta(days=10))
    assert prune("--older-than", "7d") == "Deleted 3 finished runs.\n"
    assert remaining(old + recent + [retried]) == {*recent, retried}
    assert prune("--older-than", "2w") == "Deleted 0 finished runs.\n"


@pytest.mark.parametrize("text", ["30s", "15m", "12h", "7d", "2w", " 3D "])
def test_durations_in_every_unit_are_accepted(text: str):
    make_runs(1, finished_at=timezone.now() - timedelta(weeks=3))
    assert prune("--older-than", text) == "Deleted 1 finished run.\n"


@pytest.mark.parametrize("text", ["7", "d", "7x", "-1d", "1.5h", "7 days", "", "1d2h", "9" * 30])
def test_bad_durations_are_command_errors(text: str):
    make_runs(1, finished_at=timezone.now() - timedelta(weeks=3))
    with pytest.raises(CommandError, match="duration"):
        prune(f"--older-than={text}")
    assert Run.objects.count() == 1


def test_status_is_repeatable_and_case_insensitive():
    old = timezone.now() - timedelta(days=2)
    successful = make_runs(2, finished_at=old)
    failed = make_runs(2, "FAILED", finished_at=old)
    cancelled = make_runs(1, "CANCELLED", finished_at=old)
    assert prune("--older-than", "1d", "--status", "failed") == "Deleted 2 finished runs.\n"
    assert remaining(successful + failed + cancelled) == {*successful, *cancelled}
    out = prune("--older-than", "1d", "--status", "Cancelled", "--status", "SUCCESSFUL")
    assert out == "Deleted 3 finished runs.\n"
    assert Run.objects.count() == 0


@pytest.mark.parametrize("status", ["READY", "running", "WAITING", "done", ""])
def test_active_or_unknown_statuses_are_command_errors(status: str):
    make_runs(1, status="READY", expires_at=timezone.now() - PAST)
    match = "never pruned" if status.upper() in ("READY", "RUNNING", "WAITING") else "status"
    with pytest.raises(CommandError, match=match):
        prune("--status", status)
    assert Run.objects.count() == 1


def test_the_status_filter_applies_to_expired_runs_too():
    now = timezone.now()
    successful = make_runs(2, expires_at=now - PAST)
    failed = make_runs(1, "FAILED", expires_at=now - PAST)
    assert prune("--status", "FAILED") == "Deleted 1 finished run.\n"
    assert remaining(successful + failed) == set(successful)


def test_dry_run_counts_and_deletes_nothing():
    now = timezone.now()
    ids = make_runs(3, expires_at=now - PAST) + make_runs(2, finished_at=now - timedelta(days=3))
    assert prune("--dry-run") == "Would delete 3 finished runs.\n"
    assert prune("--dry-run", "--older-than", "2d") == "Would delete 2 finished runs.\n"
    assert remaining(ids) == set(ids)


def test_thousands_are_grouped_in_the_summary():
    make_runs(1_234, expires_at=timezone.now() - PAST)
    assert prune("--dry-run") == "Would delete 1,234 finished runs.\n"
    assert prune("--batch-size", "1000") == "Deleted 1,234 finished runs.\n"


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_the_summary_alone_and_a_terminal_a_progress_line():
    make_runs(5, expires_at=timezone.now() - PAST)
    piped = prune("--batch-size", "2", "--dry-run")
    assert "\r" not in piped and piped.count("\n") == 1
    piped = prune("--batch-size", "2")
    assert piped == "Deleted 5 finished runs.\n"

    make_runs(5, expires_at=timezone.now() - PAST)
    terminal = Terminal()
    call_command("taskmill", "prune", "--batch-size", "2", stdout=terminal)
    shown = terminal.getvalue()
    assert shown.count("\r") == 4  # three batches, then the summary over them
    assert "Deleting finished runs: 4 of about 5..." in shown
    # The summary overwrites the progress line, padded over its longer text.
    assert shown.endswith("\n")
    assert shown.rsplit("\r", 1)[1].rstrip() == "Deleted 5 finished runs."


def test_verbosity_zero_prints_nothing():
    make_runs(2, expires_at=timezone.now() - PAST)
    assert prune("-v", "0") == ""
    assert Run.objects.count() == 0


def test_bad_batch_size_and_backend_are_command_errors():
    with pytest.raises(CommandError, match="at least 1"):
        prune("--batch-size", "0")
    with pytest.raises(CommandError, match="no TASKS backend named 'nope'"):
        prune("--backend", "nope")
