from django.apps import AppConfig


class LogpipelineConfig(AppConfig):
    name = "logpipeline"
    default_auto_field = "django.db.models.BigAutoField"
