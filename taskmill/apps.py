from django.apps import AppConfig


class TaskmillConfig(AppConfig):
    name = "taskmill"
    verbose_name = "taskmill"
    default_auto_field = "django.db.models.BigAutoField"
