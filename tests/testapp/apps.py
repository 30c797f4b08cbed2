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
        # Sentry and OpenTelemetry with transports that write to the record dir.
        if os.environ.get("TASKMILL_TEST_SENTRY"):
            from .observability import start_sentry

            start_sentry()
        if os.environ.get("TASKMILL_TEST_OTEL"):
            from .observability import start_opentelemetry

            start_opentelemetry()
        # tests/test_backport_coexistence.py: receivers of both packages' task signals.
        if os.environ.get("TASKMILL_TEST_BACKPORT"):
            from .coexist_receivers import listen_in_this_process

            listen_in_this_process()
