"""The demo's schedules, declared in code.

taskmill's scheduler imports every installed app's ``schedules`` module (as the worker does
with ``tasks``); ``manage.py demo_setup`` and ``manage.py taskmill sync-schedules`` write
these declarations to the database, where the admin shows them.
"""

from datetime import UTC, datetime, timedelta

import taskmill
from demo import tasks

# An interval: the sales report, rebuilt every 30 seconds; never two rebuilds at once (a
# fire while one is still queued or running is skipped, and counted as skipped).
taskmill.schedule(
    every=timedelta(seconds=30),
    name="demo: sales report every 30s",
    args=["sales"],
    kwargs={"days": 1},
    max_instances=1,
)(tasks.rebuild_report)

# A cron expression (every two minutes); the task receives the fire time it runs for, and
# a fire missed while no scheduler was running is skipped rather than run late.
taskmill.schedule(
    "*/2 * * * *",
    name="demo: session clean-up every 2 minutes",
    fire_time_kwarg="fired_at",
    misfire_policy="skip",
)(tasks.clean_up_sessions)

# Once, at a fixed time: long past, so the first scheduler that sees it fires it once (the
# run_once misfire policy), and then the schedule is finished.
taskmill.schedule(
    at=datetime(2026, 1, 1, tzinfo=UTC),
    name="demo: once, a launch page",
    args=["the taskmill demo is up"],
    misfire_policy="run_once",
)(tasks.page_on_call)

# Cron with seconds (6 fields), in a time zone, depending on another schedule: every 20
# seconds, but only once the sales report has succeeded since this one last fired.
taskmill.schedule(
    "*/20 * * * * *",
    name="demo: signups report after the sales report",
    tz="Europe/Paris",
    args=["signups"],
    depends_on=["demo: sales report every 30s"],
)(tasks.rebuild_report)
