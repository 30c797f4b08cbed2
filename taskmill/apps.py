from django.apps import AppConfig


class TaskmillConfig(AppConfig):
    name = "taskmill"
    verbose_name = "taskmill"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_sqlite_settings
        from .logs import check_log_format
        from .middleware import check_setting as check_middleware
        from .result_ttl import check_setting

        checks.register(check_sqlite_settings)
        checks.register(check_setting)
        checks.register(check_middleware)
        checks.register(check_log_format)
