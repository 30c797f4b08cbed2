"""A schedule's "when" in words, as the control room shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskmill.schedule_text import describe, describe_cron, describe_interval


@pytest.mark.parametrize(
    ("interval", "said"),
    [
        (timedelta(seconds=30), "every 30 seconds"),
        (timedelta(seconds=1), "every second"),
        (timedelta(minutes=2), "every 2 minutes"),
        (timedelta(hours=1), "every hour"),
        (timedelta(hours=1, minutes=30), "every 1 hour 30 minutes"),
        (timedelta(days=1), "every day"),
        (timedelta(days=2, seconds=5), "every 2 days 5 seconds"),
        (timedelta(milliseconds=250), "every 250 ms"),
    ],
)
def test_an_interval_in_words(interval, said):
    assert describe_interval(interval) == said


@pytest.mark.parametrize(
    ("cron", "said"),
    [
        ("30 2 * * *", "at 02:30 every day (Europe/Paris)"),
        ("0 30 2 * * *", "at 02:30 every day (Europe/Paris)"),
        ("15 30 2 * * *", "at 02:30:15 every day (Europe/Paris)"),
        ("0 9 * * 1", "at 09:00 on Monday (Europe/Paris)"),
        ("0 9 * * 1,3,5", "at 09:00 on Monday, Wednesday, Friday (Europe/Paris)"),
        ("0 9 * * 1-5", "at 09:00 on weekdays (Europe/Paris)"),
        ("0 9 * * 0", "at 09:00 on Sunday (Europe/Paris)"),
        ("* * * * * *", "every second"),
        ("*/15 * * * * *", "every 15 seconds"),
        ("*/5 * * * *", "every 5 minutes"),
        ("* * * * *", "every minute"),
        ("0 */2 * * *", "every 2 hours"),
        ("0 * * * *", "every hour"),
        # Shapes not put into words are shown as written, never paraphrased wrongly.
        ("0 9 1 * *", "cron 0 9 1 * * (Europe/Paris)"),
        ("5 * * * *", "cron 5 * * * * (Europe/Paris)"),
        ("0 9-17 * * *", "cron 0 9-17 * * * (Europe/Paris)"),
        ("0 9 * * MON", "cron 0 9 * * MON (Europe/Paris)"),
    ],
)
def test_a_cron_expression_in_words(cron, said):
    assert describe_cron(cron, "Europe/Paris") == said


def test_once_in_the_schedules_time_zone():
    moment = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert describe("once", run_at=moment) == "once at 2026-01-01 00:00 UTC"
    assert describe("once", run_at=moment, zone="Europe/Paris") == ("once at 2026-01-01 01:00 CET")
    assert describe("interval", interval=timedelta(seconds=30)) == "every 30 seconds"
    assert describe("cron", cron="30 2 * * *", zone="UTC") == "at 02:30 every day (UTC)"
