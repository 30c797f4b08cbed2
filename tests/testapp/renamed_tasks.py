"""A task renamed inside its module (tests/test_aliases.py): runs stored under the old name
run it. The worker imports this module on demand, as for any path in an installed app."""

from __future__ import annotations

import taskmill
from taskmill.compat import DECORATOR_TAKES_OPTIONS, task


@taskmill.task(aliases=["tests.testapp.renamed_tasks.send_digest"])
def send_weekly_digest(user_id: int) -> str:
    return f"digest for {user_id}"


if DECORATOR_TAKES_OPTIONS:
    # Django 6.1's own decorator hands the option to taskmill's Task like the others.
    @task(aliases=["tests.testapp.renamed_tasks.old_cleanup"])
    def cleanup() -> str:
        return "cleaned"
