import os

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        # The fault suite's database faults, only in the processes a test asks it of.
        if os.environ.get("TASKMILL_TEST_FAULT"):
            from tests.faults import db_faults

            db_faults.install()
