"""Retention of stored requests, with archival first: each day older than ``LOG_REQUEST_RETENTION_DAYS`` is
written to ``LOG_ARCHIVE_DIR/YYYY/MM/requests-YYYY-MM-DD.<part>.ndjson.gz`` (one JSON object a row, gzip), indexed
by a ``LogArchive`` row (period, path, SHA-256, rows, bytes), and only then deleted, in one transaction with the
index row. Rows stored during the run (an import of old logs) are left for the next run, which writes a new part.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from logpipeline.models import LogArchive, RequestLog

FIELDS = ("id", "gateway_instance", "timestamp", "request_id", "client_ip", "method", "host", "uri", "route",
          "status_code", "response_time_ms", "bytes_sent", "bytes_received", "user_agent", "headers", "waf_action",
          "waf_rule_id", "metadata")
DELETE_BATCH = 10000


@dataclass
class PurgeResult:
    archived_rows: int = 0
    deleted_rows: int = 0
    archives: int = 0


def _day_start(value: datetime) -> datetime:
    return datetime.combine(value.date(), time.min, tzinfo=value.tzinfo)


def write_archive(start: datetime, end: datetime, max_id: int, directory: Path) -> LogArchive | None:
    """Write rows of [start, end) with id <= max_id to a gzip ndjson file; returns the unsaved index row."""
    rows = RequestLog.objects.filter(timestamp__gte=start, timestamp__lt=end, id__lte=max_id).order_by("id")
    part = LogArchive.objects.filter(period_start=start).count()
    folder = directory / f"{start:%Y}" / f"{start:%m}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"requests-{start:%Y-%m-%d}.{part}.ndjson.gz"
    tmp = path.with_suffix(".tmp")
    count = 0
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as out:
        for row in rows.values(*FIELDS).iterator(chunk_size=5000):
            row["timestamp"] = row["timestamp"].isoformat()
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    if not count:
        tmp.unlink()
        return None
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, path)
    return LogArchive(period_start=start, period_end=end, part=part, path=str(path), sha256=digest, rows=count,
                      bytes=path.stat().st_size)


def purge_request_logs(now: datetime | None = None, retention_days: int | None = None) -> PurgeResult:
    """Archive (when enabled) then delete requests older than the retention, one day at a time."""
    days = settings.LOG_REQUEST_RETENTION_DAYS if retention_days is None else retention_days
    if days < 1:
        raise ValueError(f"request retention must be at least 1 day, got {days}")
    cutoff = _day_start((now or timezone.now()) - timedelta(days=days))
    result = PurgeResult()
    directory = Path(settings.LOG_ARCHIVE_DIR)
    while True:
        oldest = RequestLog.objects.filter(timestamp__lt=cutoff).order_by("timestamp").values_list(
            "timestamp", flat=True).first()
        if oldest is None:
            return result
        start = _day_start(oldest.astimezone(timezone.get_current_timezone()))
        end = min(start + timedelta(days=1), cutoff)
        period = RequestLog.objects.filter(timestamp__gte=start, timestamp__lt=end)
        max_id = period.order_by("-id").values_list("id", flat=True).first() or 0
        archive = write_archive(start, end, max_id, directory) if settings.LOG_ARCHIVE_ENABLED else None
        with transaction.atomic():
            if archive is not None:
                archive.save()
                result.archives += 1
                result.archived_rows += archive.rows
            while True:
                ids = list(period.filter(id__lte=max_id).values_list("id", flat=True)[:DELETE_BATCH])
                if not ids:
                    break
                result.deleted_rows += RequestLog.objects.filter(id__in=ids).delete()[0]
