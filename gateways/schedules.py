"""Periodic jobs of the push plane (installed by `manage.py setup_schedules`)."""

from __future__ import annotations

from django.conf import settings

from worker_project import queues
from worker_project.schedules import PeriodicJob

SCHEDULES = [
    PeriodicJob(
        name="gateways: reconcile push",
        task="gateways.reconcile_push",
        every_seconds=max(settings.PUSH_RECONCILE_SECONDS, 10.0),
        queue=queues.CONFIG,
        expires_seconds=int(max(settings.PUSH_RECONCILE_SECONDS, 10.0)),
        description="Re-announce desired versions (lost Redis notices) and release instances of dead replicas",
    ),
]
