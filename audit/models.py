"""The append-only audit trail and the history of every job run."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ActorType(models.TextChoices):
    PERSON = "person", "Person"
    AUTOMATION = "automation", "Automation"


class AuditEvent(models.Model):
    """One change, by a person or by automation. Never updated, never deleted.

    ``hash`` = SHA-256 over the canonical JSON of this event's fields plus ``prev_hash``, so editing or
    removing any row breaks the chain from that row on (`manage.py verify_audit_chain` finds it). On
    PostgreSQL a trigger refuses UPDATE and DELETE outright.
    """

    occurred_at = models.DateTimeField(db_index=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor = models.CharField(max_length=150, help_text="username, or the task/automation name")
    action = models.CharField(max_length=100, db_index=True, help_text="e.g. certificate.renewed")
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # admin: "what happened to this object", newest first
            models.Index(fields=["object_type", "object_id", "-id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_type}:{self.object_id}"


class JobState(models.TextChoices):
    RECEIVED = "received", "Received"
    STARTED = "started", "Started"
    RETRY = "retry", "Retrying"
    SUCCESS = "success", "Succeeded"
    FAILURE = "failure", "Failed"
    REVOKED = "revoked", "Revoked"


class JobRun(models.Model):
    """One execution of one Celery task, written by signal handlers; survives restarts (unlike Flower)."""

    task_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=200)
    queue = models.CharField(max_length=50, blank=True)
    args_digest = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the arguments, never them")
    args_preview = models.CharField(max_length=200, blank=True, help_text="ids only, secrets redacted")
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.RECEIVED)
    worker = models.CharField(max_length=200, blank=True)
    periodic_task_name = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # admin list filtered by task, newest first; retention deletes by created_at
            models.Index(fields=["task_name", "-created_at"], name="jobrun_task_idx"),
            models.Index(fields=["state", "-created_at"], name="jobrun_state_idx"),
            models.Index(fields=["created_at"], name="jobrun_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.state}] {self.task_id}"


class ApprovalState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ApprovalRequest(models.Model):
    """A change that waits for a second person (four eyes), for any app: a WAF rule-set version, a certificate
    request, a revocation… The subject is referenced generically (``subject_type`` = the model's label, as in
    AuditEvent) so this app imports no other. Decided only through ``audit.approvals`` (approve/reject), which
    refuses a decision by the requester whatever the entry point (admin, command, API)."""

    subject_type = models.CharField(max_length=100, help_text="app_label.model of the subject")
    subject_id = models.CharField(max_length=100)
    action = models.CharField(max_length=100, help_text="what is approved, e.g. waf_config.deploy_version")
    permission = models.CharField(max_length=150, blank=True, help_text="Django permission an approver needs")
    summary = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    requested_by_name = models.CharField(max_length=150, help_text="username, or the automation's name")
    justification = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=ApprovalState.choices, default=ApprovalState.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # one open request per subject and action (request_approval returns the open one)
            models.UniqueConstraint(fields=["subject_type", "subject_id", "action"],
                                    condition=models.Q(state="pending"), name="uniq_pending_approval"),
        ]
        indexes = [
            # admin queue: pending first, newest first; "requests for this object"
            models.Index(fields=["state", "-created_at"], name="approval_state_idx"),
            models.Index(fields=["subject_type", "subject_id"], name="approval_subject_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.subject_type}:{self.subject_id} [{self.state}]"
