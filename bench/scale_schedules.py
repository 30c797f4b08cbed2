"""The schedules bench.scheduler_scale creates and resets: a few due every second, the rest
ten years away, some of those paused while overdue."""

from __future__ import annotations

from datetime import datetime, timedelta

DUE_TASK = "bench.tasks.noop"
FAR_FUTURE = timedelta(days=3650)


def create_schedules(first: int, count: int, *, due: bool, fire_at: datetime) -> None:
    """Bulk-create ``count`` schedules named from ``first`` on: due ones fire every second from
    ``fire_at`` (even: interval 1 s, odd: cron every second), the others in ten years."""
    from taskmill.models import Schedule

    batch: list[Schedule] = []
    for number in range(first, first + count):
        name = f"{'due' if due else 'idle'}-{number:07d}"
        if due and number % 2:
            fields = {"kind": "cron", "cron": "* * * * * *"}
        else:
            fields = {"kind": "interval", "interval": timedelta(seconds=1 if due else 86400)}
        batch.append(
            Schedule(
                name=name,
                task_path=DUE_TASK,
                timezone="UTC",
                next_fire_at=fire_at if due else fire_at + FAR_FUTURE + timedelta(seconds=number),
                **fields,
            )
        )
        if len(batch) == 5000:
            Schedule.objects.bulk_create(batch)
            batch = []
    Schedule.objects.bulk_create(batch)


def pause_overdue(count: int, now: datetime) -> None:
    """Pause ``count`` of the far-future schedules, with a next fire time already past."""
    from taskmill.models import Schedule

    ids = list(
        Schedule.objects.filter(name__startswith="idle-")
        .order_by("id")
        .values_list("id", flat=True)[:count]
    )
    Schedule.objects.filter(id__in=ids).update(
        paused=True, paused_at=now, next_fire_at=now - timedelta(days=1)
    )


def unpause(now: datetime) -> None:
    from taskmill.models import Schedule

    Schedule.objects.filter(paused=True).update(
        paused=False, paused_at=None, next_fire_at=now + FAR_FUTURE
    )


def set_due_at(moment: datetime) -> None:
    from taskmill.models import Schedule

    Schedule.objects.filter(name__startswith="due-").update(
        next_fire_at=moment,
        last_fire_at=None,
        fire_count=0,
        last_enqueued_at=None,
        blocked_until=None,
    )


def delete_runs() -> None:
    from django.db import connection

    from taskmill.models import Run

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {Run._meta.db_table} CASCADE")
        else:
            Run.objects.all().delete()
