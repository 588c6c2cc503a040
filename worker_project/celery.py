"""The Celery app: Redis broker, settings from Django (CELERY_*), tasks found in every app."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")

QUEUES = ("certificates", "config", "logs", "analytics", "integrations", "maintenance")

app = Celery("worker_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in QUEUES]
app.autodiscover_tasks()
