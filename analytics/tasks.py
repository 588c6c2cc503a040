"""Jobs of the analytics app (queue ``analytics``). Thin: the logic is in plain functions tested without Celery."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from analytics import patterns, reports, rollups

logger = logging.getLogger(__name__)


@shared_task(name="analytics.rollup_new_requests", acks_late=True, time_limit=300, soft_time_limit=280)
def rollup_new_requests() -> int:
    """Roll up stored requests past the watermark (idempotent: the watermark moves with the counts)."""
    if not settings.ANALYTICS_ROLLUP_FROM_REQUESTLOG:
        return 0
    counted = rollups.rollup_new_requests()
    if counted:
        logger.info("rollups: %d requests counted", counted)
    return counted


@shared_task(name="analytics.detect_anomalies", acks_late=True, time_limit=600, soft_time_limit=580)
def detect_anomalies(hours: int = 2) -> int:
    """Judge the last ``hours`` closed hours (the previous one again: late rows; anomalies are recorded once)."""
    return len(patterns.detect_anomalies(hours=hours))


@shared_task(name="analytics.forecast_capacity", acks_late=True, time_limit=600, soft_time_limit=580)
def forecast_capacity() -> int:
    return len(patterns.forecast_capacity())


@shared_task(name="analytics.generate_report", acks_late=True, time_limit=1800, soft_time_limit=1780)
def generate_report(kind: str) -> int:
    """The last complete daily or weekly report; a rerun returns the stored one and announces nothing."""
    return reports.generate_report(kind).pk


@shared_task(name="analytics.purge_minute_rollups", acks_late=True, time_limit=1800, soft_time_limit=1780)
def purge_minute_rollups() -> int:
    return rollups.purge_minute_rollups()
