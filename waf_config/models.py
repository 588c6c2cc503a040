"""Rule sets and Gateway config as immutable versions; approval, deployment, emergency rules.

Schema only for now: the behaviour (validation for the Gateway's regex dialect, replay, approval by someone
other than the author, canary then fleet, rollback) lands with the WAF-and-config issue.
"""

from __future__ import annotations

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


class ValidationStatus(models.TextChoices):
    PENDING = "pending", "Not validated yet"
    VALID = "valid", "Valid"
    INVALID = "invalid", "Invalid"


class RuleSetVersion(models.Model):
    """Immutable content of a rule set. A change is a new version; a rollback deploys an older one."""

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
    validation_errors = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rule_set", "-number"]
        constraints = [models.UniqueConstraint(fields=["rule_set", "number"], name="uniq_ruleset_version")]

    def __str__(self) -> str:
        return f"{self.rule_set.name} v{self.number}"


class ReplayRun(models.Model):
    """A version evaluated against stored traffic, exactly as the Gateway would; the diff against the live one."""

    version = models.ForeignKey(RuleSetVersion, on_delete=models.CASCADE, related_name="replays")
    baseline = models.ForeignKey(RuleSetVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    requests_replayed = models.PositiveIntegerField(default=0)
    newly_blocked = models.PositiveIntegerField(default=0)
    newly_allowed = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"replay of {self.version}"


class Approval(models.Model):
    """A reviewer's decision. The service refuses an approval by the version's author."""

    version = models.ForeignKey(RuleSetVersion, on_delete=models.CASCADE, related_name="approvals")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved = models.BooleanField()
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "reviewer"], name="uniq_review_per_person")]

    def __str__(self) -> str:
        return f"{'approved' if self.approved else 'rejected'} by {self.reviewer_id}"


class DeploymentStage(models.TextChoices):
    CANARY = "canary", "Canary"
    FLEET = "fleet", "Fleet"


class DeploymentState(models.TextChoices):
    PUSHING = "pushing", "Pushing"
    CONVERGED = "converged", "Converged"
    REJECTED = "rejected", "Rejected by a Gateway"
    ROLLED_BACK = "rolled_back", "Rolled back"


class Deployment(models.Model):
    version = models.ForeignKey(RuleSetVersion, on_delete=models.PROTECT, related_name="deployments")
    group = models.ForeignKey("gateways.GatewayGroup", on_delete=models.PROTECT)
    stage = models.CharField(max_length=16, choices=DeploymentStage.choices)
    state = models.CharField(max_length=16, choices=DeploymentState.choices, default=DeploymentState.PUSHING)
    resource_version = models.ForeignKey(
        "gateways.ResourceVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.version} -> {self.group_id} ({self.stage}, {self.state})"


class EmergencyRule(models.Model):
    """A block pushed fast, for a while: by a person or by correlation. Withdrawn by itself at ``expires_at``."""

    match_field = models.CharField(max_length=64, default="ip", help_text="a Gateway field: ip, uri, user_agent…")
    pattern = models.CharField(max_length=500, help_text="an IP/CIDR, or a Rust-regex pattern")
    action = models.CharField(max_length=16, default="block")
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=150)
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
        return f"{self.action} {self.match_field}={self.pattern}"

