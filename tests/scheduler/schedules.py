"""Schedules declared in code, loaded only by processes using tests.scheduler.settings."""

import taskmill
from tests.testapp.scheduled_tasks import record_fire

taskmill.schedule(
    "* * * * * *",
    name="declared-every-second",
    kwargs={"label": "declared"},
    fire_time_kwarg="fired_at",
    misfire_policy="skip",
)(record_fire)
