from __future__ import annotations

from django.contrib import admin

from audit.models import AuditEvent, JobRun
from worker_project.admin_base import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "occurred_at", "actor_type", "actor", "action", "object_type", "object_id", "summary")
    list_filter = ("actor_type", "action", "object_type", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("actor", "action", "object_type", "object_id", "summary", "hash")
    date_hierarchy = "occurred_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    show_full_result_count = False  # COUNT(*) over a long trail on every page is slow


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ("task_name", "state", "queue", "started_at", "duration_ms", "retries", "worker",
                    "periodic_task_name", "args_preview")
    list_filter = ("state", "queue", "task_name", ("created_at", admin.DateFieldListFilter))
    search_fields = ("task_id", "task_name", "periodic_task_name", "error", "worker", "args_digest")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in JobRun._meta.fields]
    show_full_result_count = False
