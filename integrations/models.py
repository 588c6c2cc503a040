"""Notification channels and notifications (written by integrations.services.notify), threat feeds."""

from __future__ import annotations

from django.db import models

from worker_project.encryption import EncryptedTextField


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (HMAC-signed JSON)"
    SLACK = "slack", "Slack-compatible webhook"
    EMAIL = "email", "Email"
    PAGERDUTY = "pagerduty", "PagerDuty Events v2"


class NotificationChannel(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    target = models.CharField(max_length=500, help_text="URL, address or routing key id (not secret)")
    secret = EncryptedTextField(null=True, blank=True, help_text="HMAC key, webhook token or routing key")
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=16, default="medium")
    event_kinds = models.JSONField(default=list, blank=True, help_text="empty means every kind")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed (duplicate)"


class Notification(models.Model):
    """One alert to one channel, written only by ``integrations.services.notify``, which writes no second row
    for a channel and ``dedupe_key`` it already has."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    event_kind = models.CharField(max_length=64, help_text="e.g. certificate.failover, certificate.recovered")
    severity = models.CharField(max_length=16)
    dedupe_key = models.CharField(max_length=200)
    title = models.CharField(max_length=300)
    body = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["channel", "dedupe_key", "-created_at"], name="notif_dedupe_idx"),
            models.Index(fields=["status", "created_at"], name="notif_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_kind} -> {self.channel_id} [{self.status}]"


class ThreatFeed(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=500)
    format = models.CharField(max_length=16, default="text", help_text="text (one IP/CIDR a line) or json")
    enabled = models.BooleanField(default=True)
    etag = models.CharField(max_length=200, blank=True)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class ThreatIndicator(models.Model):
    feed = models.ForeignKey(ThreatFeed, on_delete=models.CASCADE, related_name="indicators")
    network = models.CharField(max_length=64, help_text="IP or CIDR")
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["feed", "network"], name="uniq_feed_network")]

    def __str__(self) -> str:
        return self.network

