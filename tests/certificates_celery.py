"""The project's Celery app with a short visibility timeout, for crash tests: a message whose worker was
SIGKILLed is redelivered after seconds instead of CELERY_TASK_TIME_LIMIT + 300."""

from worker_project.celery import app

app.conf.broker_transport_options = {
    "visibility_timeout": 8,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

__all__ = ["app"]
