"""Jobs of the log pipeline. Thin: the logic is in plain functions tested without Celery."""

from __future__ import annotations

import logging

from celery import shared_task

from logpipeline import archive

logger = logging.getLogger(__name__)


# Queue: maintenance (an explicit route in settings, before the "logpipeline.*" -> logs glob).
@shared_task(name="logpipeline.purge_request_logs", acks_late=True, time_limit=3600, soft_time_limit=3500)
def purge_request_logs(retention_days: int | None = None) -> dict[str, int]:
    """Archive then delete stored requests older than LOG_REQUEST_RETENTION_DAYS (idempotent: a rerun finds less)."""
    result = archive.purge_request_logs(retention_days=retention_days)
    logger.info("request logs: %d archived in %d file(s), %d deleted", result.archived_rows, result.archives,
                result.deleted_rows)
    return {"archived_rows": result.archived_rows, "archives": result.archives, "deleted_rows": result.deleted_rows}
