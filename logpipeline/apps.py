from django.apps import AppConfig


class LogpipelineConfig(AppConfig):
    name = "logpipeline"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from logpipeline.services import register_gateway_doors

        register_gateway_doors()
