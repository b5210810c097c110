from django.apps import AppConfig


class ContentJobsConfig(AppConfig):
    name = "content_jobs"
    verbose_name = "Content jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import handlers  # noqa: F401  registers the built-in job types
        from . import receivers  # noqa: F401  connects the signal receivers
