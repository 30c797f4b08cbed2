"""Daylight-saving days in two zones of each hemisphere, through the real fire transaction.

Expected fire times are found here by brute force (scanning UTC minute by minute and
reading the zone's wall clock), independently of the trigger code.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from .conftest import fire_times, make_schedule, simulate

# Many ticks through the real fire transaction: what it proves depends on the trigger code
# and the database, not on the Django version, so the LTS leg leaves it to the main leg
# (scripts/test), which runs it on every database.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ZONES = ["Europe/Paris", "America/New_York", "Australia/Sydney", "Pacific/Auckland"]
YEAR = 2027


def transition_days(zone: str) -> dict[str, date]:
    """The local dates whose clocks go forward ("spring") and back ("fall") in YEAR."""
    tz = ZoneInfo(zone)
    found: dict[str, date] = {}
    day = date(YEAR, 1, 1)
    while day.year == YEAR:
        before = datetime(day.year, day.month, day.day, tzinfo=tz).utcoffset()
        after = (datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(days=1)).utcoffset()
        if after > before:
            found["spring"] = day
        elif after < before:
            found["fall"] = day
        day += timedelta(days=1)
    return found


def utc_minutes_of(day: date, tz: ZoneInfo) -> list[datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC) - timedelta(hours=3)
    return [start + timedelta(minutes=i) for i in range(30 * 60)]


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def expected_wall_clock(day: date, tz: ZoneInfo, hour: int, minute: int) -> datetime:
    """The one fire of "minute hour * * *" on ``day``: its first pass, or the end of a gap."""
    minutes = [m for m in utc_minutes_of(day, tz) if local_day(m, tz) == day]
    matches = [
        m for m in minutes if (m.astimezone(tz).hour, m.astimezone(tz).minute) == (hour, minute)
    ]
    if matches:
        return matches[0]
    return next(
        m
        for m in minutes[1:]
        if m.astimezone(tz).utcoffset() != minutes[0].astimezone(tz).utcoffset()
    )


def expected_frequent(day: date, tz: ZoneInfo) -> list[datetime]:
    """Every instant of ``day`` whose wall clock shows :00 or :30 (both passes, no gap)."""
    return [
        m
        for m in utc_minutes_of(day, tz)
        if local_day(m, tz) == day and m.astimezone(tz).minute in (0, 30)
    ]


def in_changed_hour(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """A wall time 30 minutes into the hour that the change skips or repeats."""
    minutes = [m for m in utc_minutes_of(day, tz) if local_day(m, tz) == day]
    for earlier, later in pairwise(minutes):
        if earlier.astimezone(tz).utcoffset() != later.astimezone(tz).utcoffset():
            # The first minute of the gap, or (below) of the repeated hour.
            wall = earlier.astimezone(tz) + timedelta(minutes=1)
            if later.astimezone(tz).utcoffset() < earlier.astimezone(tz).utcoffset():
                wall = later.astimezone(tz)  # repeated: the hour starts again
            return wall.hour, 30
    raise AssertionError("no change that day")


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("change", ["spring", "fall"])
def test_dst_days_fire_wall_clock_times_once_and_frequent_ones_in_absolute_time(zone, change):
    tz = ZoneInfo(zone)
    day = transition_days(zone)[change]
    hour, minute = in_changed_hour(day, tz)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC) - timedelta(hours=1)
    end = start + timedelta(hours=27)
    wall = make_schedule(
        start, name="wall5", kind="cron", cron=f"{minute} {hour} * * *", timezone=zone
    )
    wall6 = make_schedule(
        start, name="wall6", kind="cron", cron=f"0 {minute} {hour} * * *", timezone=zone
    )
    frequent = make_schedule(
        start, name="frequent", kind="cron", cron="*/30 * * * *", timezone=zone
    )
    hourly = make_schedule(
        start, name="interval", kind="interval", interval=timedelta(hours=1), start_at=start
    )

    simulate(end)

    on_day = lambda times: [t for t in times if local_day(t, tz) == day]  # noqa: E731
    expected = expected_wall_clock(day, tz, hour, minute)
    assert on_day(fire_times(wall)) == [expected]
    assert on_day(fire_times(wall6)) == [expected]
    frequent_times = on_day(fire_times(frequent))
    assert frequent_times == expected_frequent(day, tz)
    assert len(frequent_times) == (46 if change == "spring" else 50)
    hourly_times = fire_times(hourly)
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(hourly_times))
    assert len(hourly_times) == 27  # start+1h .. start+27h, 3600 s apart whatever the clocks say
