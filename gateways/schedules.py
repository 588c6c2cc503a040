"""Periodic jobs of the push plane (installed by `manage.py setup_schedules`)."""

from __future__ import annotations

from django.conf import settings

try:
    from worker_project.schedules import PeriodicJob
except ImportError:  # the foundation's scheduler module lands separately; keep the declaration importable
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class PeriodicJob:  # type: ignore[no-redef]
        name: str
        task: str
        every_seconds: float
        queue: str
        expires_seconds: float
        description: str


SCHEDULES = [
    PeriodicJob(
        name="gateways: reconcile push",
        task="gateways.reconcile_push",
        every_seconds=max(settings.PUSH_RECONCILE_SECONDS, 10.0),
        queue="config",
        expires_seconds=max(settings.PUSH_RECONCILE_SECONDS, 10.0),
        description="Re-announce desired versions (lost Redis notices) and release instances of dead replicas",
    ),
]
