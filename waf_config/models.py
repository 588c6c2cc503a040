"""Rule sets and Gateway config as immutable versions; replay, deployment (canary, fleet, rollback), emergency rules.

Behaviour is in ``waf_config.services``; approvals go through ``audit.approvals`` (one mechanism for every app).
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q


class RuleSetKind(models.TextChoices):
    WAF_RULES = "waf_rules", "WAF rules (waf-rules.yaml)"
    MODSECURITY = "modsecurity", "ModSecurity SecRule file"
    GATEWAY_CONFIG = "gateway_config", "Gateway config (gateway.yaml)"


class RuleSet(models.Model):
    name = models.SlugField(max_length=128, unique=True)
    kind = models.CharField(max_length=32, choices=RuleSetKind.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ConfigDocumentManager(models.Manager["ConfigDocument"]):
    def get_queryset(self) -> models.QuerySet[ConfigDocument]:
        return super().get_queryset().exclude(kind=RuleSetKind.WAF_RULES)


class ConfigDocument(RuleSet):
    """The config documents the Worker manages (gateway.yaml, ModSecurity files): the same immutable versions,
    validation, approval and deployment as rule sets, listed apart in admin."""

    objects: ClassVar[ConfigDocumentManager] = ConfigDocumentManager()

    class Meta:
        proxy = True


class ValidationStatus(models.TextChoices):
    PENDING = "pending", "Not validated yet"
    VALID = "valid", "Valid"
    INVALID = "invalid", "Invalid"


class VersionState(models.TextChoices):
    DRAFT = "draft", "Draft"
    VALIDATED = "validated", "Validated"
    REPLAYED = "replayed", "Replayed (report attached)"
    APPROVED = "approved", "Approved"
    CANARY = "canary", "On the canary group"
    DEPLOYED = "deployed", "Deployed"
    REJECTED = "rejected", "Rejected"
    ROLLED_BACK = "rolled_back", "Rolled back"


class RuleSetVersion(models.Model):
    """Immutable content of a rule set. A change is a new version; a rollback points a group at an older one.

    Only ``state`` and the validation result change after creation (through the services' conditional updates);
    ``content`` and ``checksum`` never do (``save`` refuses).
    """

    rule_set = models.ForeignKey(RuleSet, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    content = models.TextField(help_text="exactly what the Gateway will read")
    checksum = models.CharField(max_length=64)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    comment = models.TextField(blank=True)
    validation_status = models.CharField(
        max_length=16, choices=ValidationStatus.choices, default=ValidationStatus.PENDING
    )
    validation_errors = models.JSONField(default=list, blank=True, help_text="every finding (errors and warnings)")
    validated_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=VersionState.choices, default=VersionState.DRAFT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rule_set", "-number"]
        constraints = [models.UniqueConstraint(fields=["rule_set", "number"], name="uniq_ruleset_version")]
        permissions = [
            ("approve_rulesetversion", "Can approve or reject a rule-set version (not one's own)"),
            ("deploy_rulesetversion", "Can deploy and roll back rule-set versions"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_set.name} v{self.number}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            fields = kwargs.get("update_fields")
            if fields is None or IMMUTABLE_FIELDS & set(fields):  # type: ignore[call-overload]
                raise ValueError("a rule-set version is immutable: create a new version instead")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


IMMUTABLE_FIELDS = {"content", "checksum", "rule_set", "rule_set_id", "number", "parent", "parent_id", "author",
                    "author_id"}


class ConfigVersion(RuleSetVersion):
    """A version of a config document (gateway.yaml or a ModSecurity file); see ConfigDocument."""

    class Meta:
        proxy = True


class ReplaySet(models.Model):
    """Stored requests to replay versions against: an imported corpus (``import_replay_corpus``) or, later, recent
    traffic from the log pipeline."""

    name = models.SlugField(max_length=128, unique=True)
    source = models.CharField(max_length=200, blank=True, help_text="file name or pipeline that filled it")
    description = models.TextField(blank=True)
    request_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ReplayRequest(models.Model):
    """One stored request, as ``waf_config.traffic.Request.to_dict`` (label benign/attack when known)."""

    replay_set = models.ForeignKey(ReplaySet, on_delete=models.CASCADE, related_name="requests")
    position = models.PositiveIntegerField()
    data = models.JSONField()

    class Meta:
        ordering = ["replay_set", "position"]
        constraints = [models.UniqueConstraint(fields=["replay_set", "position"], name="uniq_replay_position")]

    def __str__(self) -> str:
        return f"{self.replay_set_id}#{self.position}"


class ReplayRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReplayRun(models.Model):
    """A version evaluated against stored traffic, exactly as the Gateway would; the diff against the live one.

    A large set is replayed by the task ``run_replay``: the row exists from the request on (``queued``), counts
    ``requests_replayed`` of ``requests_total`` while ``running``, and holds the report once ``done``."""

    version = models.ForeignKey(RuleSetVersion, on_delete=models.CASCADE, related_name="replays")
    replay_set = models.ForeignKey(ReplaySet, null=True, on_delete=models.SET_NULL, related_name="+")
    baseline = models.ForeignKey(RuleSetVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=ReplayRunStatus.choices, default=ReplayRunStatus.DONE)
    requests_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    requests_replayed = models.PositiveIntegerField(default=0)
    newly_blocked = models.PositiveIntegerField(default=0)
    newly_allowed = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"replay of {self.version}"

    @property
    def progress(self) -> str:
        if self.status == ReplayRunStatus.DONE:
            return f"done: {self.requests_replayed} requests"
        if self.status == ReplayRunStatus.FAILED:
            return f"failed: {self.error[:200]}"
        share = f" ({self.requests_replayed / self.requests_total:.0%})" if self.requests_total else ""
        return f"{self.status}: {self.requests_replayed} of {self.requests_total}{share}"


class DeploymentState(models.TextChoices):
    CANARY = "canary", "Pushing to the canary group"
    SOAKING = "soaking", "Soaking on the canary group"
    FLEET = "fleet", "Pushing to every group"
    DEPLOYED = "deployed", "Deployed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"


ACTIVE_DEPLOYMENT_STATES = (DeploymentState.CANARY, DeploymentState.SOAKING, DeploymentState.FLEET)


class Deployment(models.Model):
    """One rollout of a version: canary group, soak with no NACK, then every group; rolled back on a NACK.

    A manual rollback is a Deployment too (``rollback_of`` set, no canary): its version is an older deployed one.
    """

    version = models.ForeignKey(RuleSetVersion, on_delete=models.PROTECT, related_name="deployments")
    canary_group = models.ForeignKey("gateways.GatewayGroup", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    groups = models.JSONField(default=list, blank=True, help_text="names of the groups this rollout pointed")
    state = models.CharField(max_length=16, choices=DeploymentState.choices, default=DeploymentState.CANARY)
    soak_seconds = models.PositiveIntegerField(default=0)
    previous = models.JSONField(default=dict, blank=True, help_text="group name -> version id it ran before")
    resource_versions = models.JSONField(default=dict, blank=True, help_text="group name -> pushed version id")
    outcome = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    canary_acked_at = models.DateTimeField(null=True, blank=True)
    fleet_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # a version has at most one rollout in flight (start_deployment relies on it)
            models.UniqueConstraint(fields=["version"], condition=Q(state__in=["canary", "soaking", "fleet"]),
                                    name="uniq_active_deployment"),
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.state})"


class GroupVersion(models.Model):
    """What a group runs: for each pushed file kind, the version its builder returns. Rollback moves this pointer."""

    group = models.ForeignKey("gateways.GatewayGroup", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=RuleSetKind.choices)
    version = models.ForeignKey(RuleSetVersion, on_delete=models.PROTECT, related_name="+")
    deployment = models.ForeignKey(Deployment, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "kind"], name="uniq_group_kind")]

    def __str__(self) -> str:
        return f"{self.group_id}/{self.kind} -> {self.version_id}"


class EmergencyKind(models.TextChoices):
    IP = "ip", "IP address"
    CIDR = "cidr", "CIDR network"
    PATTERN = "pattern", "Pattern (Rust regex on a field)"


class EmergencyAction(models.TextChoices):
    BLOCK = "block", "Block (403)"
    LOG = "log", "Count only (log)"


class EmergencyRule(models.Model):
    """A block pushed fast, for a while: by a person or by correlation. Withdrawn by itself at ``expires_at``."""

    kind = models.CharField(max_length=16, choices=EmergencyKind.choices, default=EmergencyKind.IP)
    match_field = models.CharField(max_length=64, default="ip", help_text="a Gateway field: ip, uri, user_agent…")
    pattern = models.CharField(max_length=500, help_text="an IP/CIDR, or a Rust-regex pattern")
    action = models.CharField(max_length=16, choices=EmergencyAction.choices, default=EmergencyAction.BLOCK)
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=150, help_text="username, or the automation's name")
    created_by_type = models.CharField(max_length=16, default="person", help_text="person or automation")
    withdrawn_by = models.CharField(max_length=150, blank=True)
    incident = models.ForeignKey("logpipeline.Incident", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # expiry job and the pushed state: live rules ordered by expiry
            models.Index(fields=["expires_at"], condition=Q(withdrawn_at__isnull=True), name="emergency_live_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {self.pattern}"

