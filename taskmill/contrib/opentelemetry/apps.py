from django.apps import AppConfig


class OpenTelemetryConfig(AppConfig):
    """In INSTALLED_APPS, does what ``taskmill.contrib.opentelemetry.install()`` does."""

    name = "taskmill.contrib.opentelemetry"
    label = "taskmill_opentelemetry"
    verbose_name = "taskmill: OpenTelemetry"

    def ready(self) -> None:
        from . import install

        install()
