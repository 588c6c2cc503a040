"""The Celery app: Redis broker, settings from Django (CELERY_*), tasks found in every app."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue

from worker_project.queues import ALL as QUEUES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "worker_project.settings")

app = Celery("worker_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each queue gets its own exchange and routing key. A bare Queue(name) inherits the default ones ("maintenance"),
# binding all six queues under one key: Celery's own publishes go straight to the queue and are unaffected, but
# anything publishing by exchange (and the worker's banner, and Flower) would see every queue as "maintenance".
app.conf.task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_done_connections(sender: Any = None, **_: Any) -> None:
    """With CELERY_DB_REUSE_MAX set, Celery no longer closes connections around tasks: close, in this thread, the
    ones Django would close after a web request (past CONN_MAX_AGE, broken, not in autocommit), keep the rest."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # an eager task runs inside its caller's transaction
    from django.db import close_old_connections

    close_old_connections()
