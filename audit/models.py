"""The append-only audit trail and the history of every job run."""

from __future__ import annotations

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
