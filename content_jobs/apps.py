from django.apps import AppConfig


class ContentJobsConfig(AppConfig):
    name = "content_jobs"
    verbose_name = "Content jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from importlib import import_module

        from django.conf import settings

        from . import handlers  # noqa: F401  registers the built-in job types

        for module in settings.NEXUS_JOB_TYPE_MODULES:
            import_module(module)  # more job types, registered on import
        from . import receivers  # noqa: F401  connects the signal receivers
        from .fanout import install

        install()  # the listener manager that the hub hands events to
