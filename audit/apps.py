from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process that loads Django (the worker too, through the Celery app) records job runs.
        from audit.jobs import connect_signals

        connect_signals()
        # /metrics: task runs, queue depths and beat's heartbeat age (worker_project.metrics runs the readers)
        from audit.metrics import register_readers

        register_readers()
