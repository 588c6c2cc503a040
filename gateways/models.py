"""The Gateway fleet: groups, instances, desired state per resource type, and what each instance holds."""

from __future__ import annotations

from django.db import models

from worker_project.encryption import EncryptedBytesField


class ResourceType(models.TextChoices):
    """What the Worker pushes; each is a full state of the world for its type."""

    CERTIFICATES = "certificates", "Certificates"
    WAF_RULES = "waf_rules", "WAF rules"
    CONFIG = "config", "Gateway config"
    ACME_CHALLENGES = "acme_challenges", "ACME challenges"
    EMERGENCY_RULES = "emergency_rules", "Emergency rules"
    MODSECURITY = "modsecurity", "ModSecurity rule file"


DEFAULT_GROUP = "default"  # created by migration 0002; where a credential goes when no group is named


class GatewayGroup(models.Model):
    """Instances that receive versions together (e.g. ``canary``, ``default``).

    Created by people (admin, ``manage.py gateway_group``), never by a Gateway: a Gateway's group is the one its
    credential was issued for.
    """

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GatewayInstance(models.Model):
    """One Gateway process, registered by its ``Hello``; its stream may be held by any grpc replica."""

    instance_id = models.CharField(max_length=128, unique=True)
    group = models.ForeignKey(GatewayGroup, on_delete=models.PROTECT, related_name="instances")
    agent_version = models.CharField(max_length=64, blank=True)
    client_identity = models.CharField(max_length=200, blank=True, help_text="CN of its client certificate")
    peer = models.CharField(max_length=200, blank=True)
    connected = models.BooleanField(default=False)
    replica = models.CharField(max_length=128, blank=True, help_text="the run_grpc replica holding the stream")
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["group__name", "instance_id"]
        indexes = [
            # "who in this group must ACK before an HTTP-01 challenge is answerable"
            models.Index(fields=["group", "connected"], name="gwinstance_group_conn_idx"),
        ]

    def __str__(self) -> str:
        return self.instance_id


class ResourceVersion(models.Model):
    """An immutable desired state of one resource type for one group. The newest row is the desired one.

    ``id`` doubles as the version number: unique and increasing, so a Gateway is never sent the same version
    twice and a rollback is a new version carrying old content. The payload holds private keys, so it is
    encrypted; ``checksum`` (SHA-256 of the plaintext) makes publishing an unchanged state a no-op.
    """

    resource_type = models.CharField(max_length=32, choices=ResourceType.choices)
    group = models.ForeignKey(GatewayGroup, on_delete=models.PROTECT, related_name="resource_versions")
    payload = EncryptedBytesField()
    checksum = models.CharField(max_length=64)
    summary = models.JSONField(default=dict, blank=True, help_text="non-secret description for admin")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # desired version lookup: newest row per (type, group)
            models.Index(fields=["resource_type", "group", "-id"], name="resver_desired_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.resource_type}@{self.group.name} v{self.pk}"


class InstanceResourceState(models.Model):
    """What one instance was sent, acknowledged and rejected for one resource type."""

    instance = models.ForeignKey(GatewayInstance, on_delete=models.CASCADE, related_name="resource_states")
    resource_type = models.CharField(max_length=32, choices=ResourceType.choices)
    sent_version = models.BigIntegerField(null=True, blank=True)
    sent_nonce = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    acked_version = models.BigIntegerField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    rejected_version = models.BigIntegerField(null=True, blank=True, help_text="parked: never resent")
    rejected_error = models.TextField(blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    last_converge_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["instance", "resource_type"], name="uniq_instance_resource"),
        ]
        indexes = [
            # "has every instance ACKed version v of this type": filter by type and acked version
            models.Index(fields=["resource_type", "acked_version"], name="instres_acked_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.instance} {self.resource_type}: acked {self.acked_version}"


class GatewayCredential(models.Model):
    """A client certificate issued by ``manage.py issue_gateway_cert NAME --group G``: who a Gateway is.

    Every RPC maps the verified client certificate (by SHA-256 fingerprint) to this row: ``name`` is the Gateway's
    instance id and ``group`` the only group whose state it may read. Nothing the Gateway sends overrides either.
    Revoke it to refuse that Gateway on every RPC and close its open streams.
    """

    name = models.CharField(max_length=128, help_text="the Gateway's instance id")
    group = models.ForeignKey(GatewayGroup, on_delete=models.PROTECT, related_name="credentials")
    serial = models.CharField(max_length=64, unique=True)
    fingerprint_sha256 = models.CharField(max_length=64, unique=True)
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name", "-created_at"]
        indexes = [
            # the replicas' revocation backstop: "credentials revoked since my last check"
            models.Index(fields=["revoked_at"], name="gwcred_revoked_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.serial})"
