"""Traffic rollups (counts and a mergeable latency sketch per instance, route and bucket), the bookkeeping that
makes building them idempotent, anomalies, capacity forecasts and reports. Behaviour: ``analytics.rollups``,
``analytics.patterns``, ``analytics.reports`` (``analytics.services`` is the API other apps call)."""

from __future__ import annotations

from django.db import models


class Granularity(models.TextChoices):
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class TrafficRollup(models.Model):
    """One (granularity, bucket, Gateway instance, route): counts and a DDSketch of latencies.

    Hour and day rows are merged from the same batches as the minute rows (sketches merge exactly), so the fleet
    or a longer period is a merge of rows, never a re-read of raw logs. Written only by ``rollups.add_batch``.
    """

    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    instance = models.CharField(max_length=128)
    route = models.CharField(max_length=300, help_text="normalised route; every 404 is counted as '<404>'")
    requests = models.PositiveBigIntegerField(default=0)
    status_1xx = models.PositiveBigIntegerField(default=0)
    status_2xx = models.PositiveBigIntegerField(default=0)
    status_3xx = models.PositiveBigIntegerField(default=0)
    status_4xx = models.PositiveBigIntegerField(default=0)
    status_5xx = models.PositiveBigIntegerField(default=0)
    status_other = models.PositiveBigIntegerField(default=0, help_text="no status or outside 100..599")
    bytes_sent = models.PositiveBigIntegerField(default=0)
    bytes_received = models.PositiveBigIntegerField(default=0)
    waf_blocked = models.PositiveBigIntegerField(default=0)
    waf_logged = models.PositiveBigIntegerField(default=0)
    waf_rate_limited = models.PositiveBigIntegerField(default=0)
    waf_rules = models.JSONField(default=dict, blank=True, help_text="WAF rule id -> requests it acted on")
    latency_sketch = models.BinaryField(blank=True, default=b"", help_text="analytics.sketches format")
    p50_ms = models.FloatField(null=True, blank=True)
    p90_ms = models.FloatField(null=True, blank=True)
    p99_ms = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["granularity", "bucket_start", "instance", "route"],
                                    name="uniq_rollup_bucket"),
        ]
        # the unique index also serves "every row of one granularity in a period" (dashboards, reports, baselines)

    def __str__(self) -> str:
        return f"{self.instance} {self.route} {self.granularity} {self.bucket_start:%Y-%m-%d %H:%M}"


class RollupBatch(models.Model):
    """A batch already counted: its key is inserted in the transaction that adds it, so a redelivered batch is
    refused by the unique key instead of counted twice."""

    key = models.CharField(max_length=200, unique=True)
    events = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class RollupWatermark(models.Model):
    """The last ``logpipeline.RequestLog`` id rolled up by the periodic reader (one row per reader name)."""

    name = models.CharField(max_length=64, unique=True)
    last_id = models.BigIntegerField(default=0, help_text="rows up to this id are counted")
    horizon_id = models.BigIntegerField(default=0, help_text="the highest id seen by the previous run: rows up to "
                                        "it are read next (a batch still committing below it has had a run's time)")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"


class Anomaly(models.Model):
    """A route's hour that left its seasonal baseline (same hour of week), with the evidence."""

    class Metric(models.TextChoices):
        RATE = "rate", "Request rate"
        ERROR_RATIO = "error_ratio", "5xx ratio"
        LATENCY = "latency_p99", "p99 latency"

    route = models.CharField(max_length=300)
    metric = models.CharField(max_length=16, choices=Metric.choices)
    bucket_start = models.DateTimeField(help_text="the hour judged")
    value = models.FloatField()
    baseline = models.FloatField(help_text="median of the same hour of week (±1 h) in earlier weeks")
    scale = models.FloatField(help_text="1.4826 × MAD, floored")
    score = models.FloatField(help_text="(value - baseline) / scale")
    severity = models.CharField(max_length=16, default="medium")
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # detection is rerun on overlapping hours: one anomaly per route, metric and hour
            models.UniqueConstraint(fields=["route", "metric", "bucket_start"], name="uniq_anomaly"),
        ]
        ordering = ["-bucket_start"]
        verbose_name_plural = "anomalies"

    def __str__(self) -> str:
        return f"{self.route} {self.metric} {self.bucket_start:%Y-%m-%d %H:%M} z={self.score:.1f}"


class CapacityForecast(models.Model):
    """Daily peak request rate trend per scope ('instance:<id>' or 'route:<route>') and days until capacity."""

    scope = models.CharField(max_length=340, unique=True)
    computed_at = models.DateTimeField()
    days_observed = models.PositiveIntegerField()
    peak_rps = models.FloatField(help_text="latest day's busiest minute, requests per second")
    slope_rps_per_day = models.FloatField(help_text="Theil-Sen slope of the daily peaks")
    capacity_rps = models.FloatField()
    days_until_capacity = models.FloatField(null=True, blank=True, help_text="empty: not growing towards it")

    class Meta:
        ordering = ["days_until_capacity", "scope"]

    def __str__(self) -> str:
        return self.scope


class Report(models.Model):
    class Kind(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=64, choices=Kind.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    body = models.JSONField(default=dict, blank=True, help_text="the figures the report shows")
    file_path = models.CharField(max_length=500, blank=True, help_text="the PDF")
    html_path = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "period_start", "period_end"], name="uniq_report_period"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"
