"""Requests and security events from the fleet, detectors and their configuration, incidents, intake sources,
archives. Behaviour lives in the modules beside this one (``services.ingest`` is the entry point)."""

from __future__ import annotations

from django.db import models


class RequestLog(models.Model):
    """One request as a Gateway (or nginx in front of it) saw it; recent ones feed WAF replay.

    Written only by ``logpipeline.storage.store_requests`` (COPY on PostgreSQL), never row by row.
    """

    gateway_instance = models.CharField(max_length=128, blank=True)
    timestamp = models.DateTimeField()
    request_id = models.CharField(max_length=128, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    method = models.CharField(max_length=16, blank=True)
    host = models.CharField(max_length=253, blank=True)
    uri = models.TextField(blank=True)
    route = models.CharField(max_length=300, blank=True, help_text="normalised path, ids replaced by {id}")
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
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    MITIGATED = "mitigated", "Mitigated"
    CLOSED = "closed", "Closed"


class ResponsePolicy(models.TextChoices):
    NOTIFY = "notify", "Notify only"
    COUNT = "count", "Count-only emergency rule"
    BLOCK = "block", "Blocking emergency rule"


class Detector(models.Model):
    """One correlation detector's configuration: edited in admin, read by the engine (cached a few seconds).

    ``kind`` names the code that counts (``logpipeline.detectors``); several rows may share a kind with different
    ``params`` (e.g. the three payload classes).
    """

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=32)
    enabled = models.BooleanField(default=True)
    threshold = models.PositiveIntegerField(help_text="events in the window that fire the detector")
    window_seconds = models.PositiveIntegerField(default=300)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    params = models.JSONField(default=dict, blank=True, help_text="kind-specific settings, see docs/logs.md")
    response = models.CharField(max_length=16, choices=ResponsePolicy.choices, default=ResponsePolicy.NOTIFY)
    simulate = models.BooleanField(default=True, help_text="record what would have been done, do nothing")
    block_ttl_seconds = models.PositiveIntegerField(default=900, help_text="first rule's TTL; doubles per repeat")
    max_block_ttl_seconds = models.PositiveIntegerField(default=86400)
    description = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AllowListEntry(models.Model):
    """An IP or CIDR that is never counted by a detector and never blocked, whatever a detector says."""

    cidr = models.CharField(max_length=64, unique=True, help_text="an IP or a network, e.g. 10.0.0.0/8")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cidr"]
        verbose_name_plural = "allow list entries"

    def __str__(self) -> str:
        return self.cidr


class Incident(models.Model):
    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=IncidentState.choices, default=IncidentState.OPEN)
    detector = models.CharField(max_length=100)
    subject = models.CharField(max_length=200, blank=True, help_text="what related events share: an IP, a network")
    source_ips = models.JSONField(default=list, blank=True)
    gateway_instances = models.JSONField(default=list, blank=True)
    summary = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField()
    last_event_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "-opened_at"], name="incident_state_idx"),
            # "the live incident for this subject" when a detection rolls up
            models.Index(fields=["subject", "state"], name="incident_subject_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class IncidentEntry(models.Model):
    """The incident's timeline: detections, responses, state changes. Append-only."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField()
    kind = models.CharField(max_length=32, help_text="detection, response, state")
    text = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "incident entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.text[:80]}"


class SecurityEvent(models.Model):
    timestamp = models.DateTimeField()
    gateway_instance = models.CharField(max_length=128, blank=True)
    event_type = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    rule_id = models.CharField(max_length=64, blank=True)
    detector = models.CharField(max_length=64, blank=True, help_text="empty for events the Gateway reported")
    subject = models.CharField(max_length=200, blank=True)
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


class ResponseAction(models.Model):
    """What the automatic response did (or, simulated, would have done) for one detection."""

    class Outcome(models.TextChoices):
        SIMULATED = "simulated", "Simulated"
        REQUESTED = "requested", "Requested"
        REFUSED_ALLOW_LIST = "allow_listed", "Refused: allow-listed"
        NO_RESPONDER = "no_responder", "No responder registered"
        FAILED = "failed", "Responder failed"
        NOTIFIED = "notified", "Notified"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="responses")
    detector = models.CharField(max_length=64)
    policy = models.CharField(max_length=16, choices=ResponsePolicy.choices)
    match_field = models.CharField(max_length=32)
    pattern = models.CharField(max_length=500)
    ttl_seconds = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # "how often has this pattern been blocked before" (TTL growth for repeat offenders)
            models.Index(fields=["pattern", "created_at"], name="response_pattern_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} {self.match_field}={self.pattern} ({self.outcome})"


class IntakeSource(models.Model):
    """One sender of logs (a Gateway instance through one door): its HTTP token and its intake counters."""

    instance_id = models.CharField(max_length=128, help_text="the Gateway instance its events are tagged with")
    kind = models.CharField(max_length=32, help_text="http, grpc-stream, grpc-sendlogs, file")
    token_sha256 = models.CharField(max_length=64, blank=True, help_text="HTTP door only; the token is shown once")
    enabled = models.BooleanField(default=True)
    accepted = models.PositiveBigIntegerField(default=0)
    malformed = models.PositiveBigIntegerField(default=0)
    batches = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["instance_id", "kind"]
        constraints = [models.UniqueConstraint(fields=["instance_id", "kind"], name="uniq_intake_source")]
        indexes = [
            # HTTP door: token -> source on every POST
            models.Index(fields=["token_sha256"], name="intake_token_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id} ({self.kind})"


class MalformedSample(models.Model):
    """A bounded sample of rejected lines per source (LOG_MALFORMED_SAMPLES newest are kept) with the reason."""

    source = models.ForeignKey(IntakeSource, on_delete=models.CASCADE, related_name="samples")
    reason = models.CharField(max_length=200)
    excerpt = models.TextField(help_text="the start of the line, repr() of bytes that are not UTF-8")
    length = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.reason}: {self.excerpt[:60]}"


class ImportCheckpoint(models.Model):
    """``import_logs`` progress per file, committed with each batch, so an interrupted import resumes."""

    path = models.CharField(max_length=1000)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the file's first MiB and its size")
    offset = models.PositiveBigIntegerField(default=0, help_text="bytes of (decompressed) input done")
    lines = models.PositiveBigIntegerField(default=0)
    malformed = models.PositiveBigIntegerField(default=0)
    finished = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["fingerprint"], name="uniq_import_fingerprint")]

    def __str__(self) -> str:
        return f"{self.path} @ {self.offset}"


class ShipOffset(models.Model):
    """How far a shipper's byte stream (the reference agent's access log) is stored, per (instance, source).

    Written in the transaction that stores the batch's rows, so a batch resent after a crash is recognised and
    never stored twice; what the Worker answers in ``LogAck`` and the agent resumes from."""

    instance_id = models.CharField(max_length=128)
    source = models.CharField(max_length=256, help_text="the shipper's name for the stream (path and inode)")
    offset_end = models.PositiveBigIntegerField(default=0, help_text="bytes stored so far")
    batches = models.PositiveBigIntegerField(default=0)
    duplicates = models.PositiveBigIntegerField(default=0, help_text="resent ranges answered without storing")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance_id", "source"], name="uniq_ship_offset")]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.source} @ {self.offset_end}"


class LogArchive(models.Model):
    """A compressed archive of one period's rows, written before those rows are deleted."""

    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    part = models.PositiveIntegerField(default=0, help_text="rows of a period stored after its first archive")
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveBigIntegerField()
    bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period_start", "period_end", "part"], name="uniq_archive_period_part"),
        ]

    def __str__(self) -> str:
        return self.path
