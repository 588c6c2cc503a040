"""Celery tasks of the push plane (thin: the work is in gateways.services)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(name="gateways.reconcile_push", acks_late=True, ignore_result=True)  # queue: CELERY_TASK_ROUTES
def reconcile_push() -> dict[str, int]:
    """Re-announce every desired version (a lost notice is caught) and release instances of dead replicas.

    Idempotent: replicas never resend a version an instance already has.
    """
    stale = services.mark_stale_disconnected(max_age_seconds=3 * settings.PUSH_RECONCILE_SECONDS + 30)
    return {"announced": services.announce_all(), "marked_disconnected": stale}
