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
    event_kinds = models.JSONField(default=list, blank=True,
                                   help_text='routing: event kinds this channel takes ("certificate.*" globs); '
                                             "empty means every kind")
    options = models.JSONField(default=dict, blank=True,
                               help_text="non-secret options: email {from, smtp_host, smtp_port, smtp_user, "
                                         "smtp_tls}; any kind {throttle_seconds}")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending (claimed by a worker)"
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
    incident_key = models.CharField(max_length=200, blank=True,
                                    help_text="events of one incident share it: throttled together, and PagerDuty's "
                                              "dedup_key (a recovery resolves what its failure triggered)")
    event_action = models.CharField(max_length=16, default="trigger", help_text="trigger, acknowledge or resolve")
    title = models.CharField(max_length=300)
    body = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True, help_text="HTTP status of the last attempt")
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="a failed attempt's backoff")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["channel", "dedupe_key", "-created_at"], name="notif_dedupe_idx"),
            # deliver_due_notifications: status = pending (and sending past its lease), oldest first
            models.Index(fields=["status", "created_at"], name="notif_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_kind} -> {self.channel_id} [{self.status}]"


class AlertThrottle(models.Model):
    """One window per channel and incident: a conditional update of ``window_until`` claims the right to page, so
    twenty events of one incident page once however many workers deliver them."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="throttles")
    incident_key = models.CharField(max_length=200)
    window_until = models.DateTimeField()
    suppressed = models.PositiveIntegerField(default=0, help_text="events swallowed in the current window")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "incident_key"], name="uniq_throttle")]

    def __str__(self) -> str:
        return f"{self.channel_id}/{self.incident_key} until {self.window_until:%Y-%m-%d %H:%M}"


class FeedFormat(models.TextChoices):
    TEXT = "text", "Plain text (one IP/CIDR a line, # comments)"
    CSV = "csv", "CSV (column ip, cidr or network, else the first)"
    DROP = "drop", "Spamhaus DROP (1.2.3.0/24 ; SBL123)"
    JSON = "json", "JSON (list of strings or objects with ip/cidr/network)"


class ThreatFeed(models.Model):
    name = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=500)
    format = models.CharField(max_length=16, choices=FeedFormat.choices, default=FeedFormat.TEXT)
    enabled = models.BooleanField(default=True)
    allow_private = models.BooleanField(default=False, help_text="accept private, loopback and link-local entries")
    etag = models.CharField(max_length=200, blank=True)
    last_modified = models.CharField(max_length=100, blank=True, help_text="the server's Last-Modified, sent back")
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=32, blank=True, help_text="updated, not_modified or failed")
    last_accepted = models.PositiveIntegerField(default=0)
    last_refused = models.JSONField(default=list, blank=True, help_text="the first refused entries, with why")
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class ThreatIndicator(models.Model):
    feed = models.ForeignKey(ThreatFeed, on_delete=models.CASCADE, related_name="indicators")
    network = models.CharField(max_length=64, help_text="IP or CIDR")
    provenance = models.CharField(max_length=300, blank=True, help_text="where in the feed: line and comment")
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["feed", "network"], name="uniq_feed_network")]

    def __str__(self) -> str:
        return self.network



class ThreatAllowEntry(models.Model):
    """Never blocked by a feed: an allow entry removes itself from every feed network that covers it."""

    network = models.CharField(max_length=64, unique=True, help_text="IP or CIDR")
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.network


class ThreatListPublication(models.Model):
    """One merged block list proposed to the WAF as a gateway.yaml version: what the feeds contributed (so the
    next proposal replaces exactly those entries and keeps the operator's own), and which version carries it."""

    document = models.CharField(max_length=100, help_text="the gateway.yaml config document's name")
    entries = models.JSONField(default=list, help_text="networks the feeds put in waf.ip_blacklist")
    sources = models.JSONField(default=dict, help_text="network -> feeds that listed it")
    version_id = models.BigIntegerField(null=True, blank=True, help_text="waf_config RuleSetVersion proposed")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.document}: {len(self.entries)} entries ({self.created_at:%Y-%m-%d %H:%M})"
