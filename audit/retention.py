"""Retention of the job history."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit.models import JobRun

BATCH = 5000


def purge_job_history(retention_days: int | None = None) -> int:
    """Delete runs created before now - retention, in batches so a large backlog never holds a long lock."""
    days = settings.JOB_HISTORY_RETENTION_DAYS if retention_days is None else retention_days
    if days < 1:
        raise ValueError(f"job history retention must be at least 1 day, got {days}")
    cutoff = timezone.now() - timedelta(days=days)
    total = 0
    while True:
        ids = list(JobRun.objects.filter(created_at__lt=cutoff).order_by("id").values_list("id", flat=True)[:BATCH])
        if not ids:
            return total
        total += JobRun.objects.filter(id__in=ids).delete()[0]
