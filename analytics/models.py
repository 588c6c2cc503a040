"""Traffic rollups and reports. Schema only until the analytics issue."""

from __future__ import annotations

from django.db import models


class Granularity(models.TextChoices):
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class TrafficRollup(models.Model):
    """Counts and a mergeable latency sketch per bucket and scope (fleet, group or instance)."""

    bucket_start = models.DateTimeField()
    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    scope = models.CharField(max_length=160, help_text="'fleet', 'group:<name>' or 'instance:<id>'")
    requests = models.PositiveBigIntegerField(default=0)
    status_2xx = models.PositiveBigIntegerField(default=0)
    status_3xx = models.PositiveBigIntegerField(default=0)
    status_4xx = models.PositiveBigIntegerField(default=0)
    status_5xx = models.PositiveBigIntegerField(default=0)
    blocked = models.PositiveBigIntegerField(default=0)
    bytes_sent = models.PositiveBigIntegerField(default=0)
    latency_sketch = models.BinaryField(blank=True, default=b"")
    p50_ms = models.FloatField(null=True, blank=True)
    p95_ms = models.FloatField(null=True, blank=True)
    p99_ms = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["granularity", "scope", "bucket_start"], name="uniq_rollup_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.granularity} {self.bucket_start:%Y-%m-%d %H:%M}"


class Report(models.Model):
    kind = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, default="pending")
    body = models.JSONField(default=dict, blank=True)
    file_path = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "period_start", "period_end"], name="uniq_report_period"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"

