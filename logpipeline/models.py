"""Requests and security events from the fleet, incidents, archives. Schema only until the log issue."""

from __future__ import annotations

from django.db import models


class RequestLog(models.Model):
    """One request as a Gateway (or nginx in front of it) saw it; recent ones feed WAF replay."""

    gateway_instance = models.CharField(max_length=128, blank=True)
    timestamp = models.DateTimeField()
    request_id = models.CharField(max_length=128, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    method = models.CharField(max_length=16, blank=True)
    host = models.CharField(max_length=253, blank=True)
    uri = models.TextField(blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_time_ms = models.FloatField(null=True, blank=True)
    bytes_sent = models.BigIntegerField(null=True, blank=True)
    bytes_received = models.BigIntegerField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    waf_action = models.CharField(max_length=16, blank=True)
    waf_rule_id = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["timestamp"], name="reqlog_ts_idx"),  # replay windows, retention, archival
            models.Index(fields=["client_ip", "timestamp"], name="reqlog_ip_ts_idx"),  # per-IP correlation
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.method} {self.uri[:80]}"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class IncidentState(models.TextChoices):
    OPEN = "open", "Open"
    MITIGATED = "mitigated", "Mitigated"
    CLOSED = "closed", "Closed"


class Incident(models.Model):
    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=IncidentState.choices, default=IncidentState.OPEN)
    detector = models.CharField(max_length=100)
    source_ips = models.JSONField(default=list, blank=True)
    gateway_instances = models.JSONField(default=list, blank=True)
    summary = models.TextField(blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "-opened_at"], name="incident_state_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class SecurityEvent(models.Model):
    timestamp = models.DateTimeField()
    gateway_instance = models.CharField(max_length=128, blank=True)
    event_type = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    rule_id = models.CharField(max_length=64, blank=True)
    description = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")

    class Meta:
        indexes = [
            models.Index(fields=["timestamp"], name="secevent_ts_idx"),
            models.Index(fields=["client_ip", "timestamp"], name="secevent_ip_ts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.client_ip}"


class LogArchive(models.Model):
    """A compressed archive of one period's rows, written before those rows are deleted."""

    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveBigIntegerField()
    bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["period_start", "period_end"], name="uniq_archive_period")]

    def __str__(self) -> str:
        return self.path

