from django.apps import AppConfig


class JobLogsConfig(AppConfig):
    name = "job_logs"
    verbose_name = "Job logs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  connects the log publisher
