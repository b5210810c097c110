from django.apps import AppConfig


class BaselinesConfig(AppConfig):
    name = "bench.baselines"
    label = "baselines"
    default_auto_field = "django.db.models.BigAutoField"
