"""Maintenance jobs of the audit app: job-history retention and the beat heartbeat. Thin: logic in services."""

from __future__ import annotations

import logging

from celery import shared_task

from audit import heartbeat, retention

logger = logging.getLogger(__name__)


# Queue: maintenance, by the "audit.*" route in settings (the task-level queue option is deprecated).
@shared_task(name="audit.purge_job_history", acks_late=True, time_limit=600, soft_time_limit=540)
def purge_job_history(retention_days: int | None = None) -> int:
    """Delete JobRun rows older than JOB_HISTORY_RETENTION_DAYS (idempotent: a rerun finds less to delete)."""
    deleted = retention.purge_job_history(retention_days)
    logger.info("job history: %d run(s) older than the retention deleted", deleted)
    return deleted


@shared_task(name="audit.beat_heartbeat", acks_late=True, time_limit=30, soft_time_limit=20)
def beat_heartbeat() -> float:
    """Fired by beat every minute: proves beat and a maintenance worker are alive (see /metrics)."""
    return heartbeat.record_heartbeat()
