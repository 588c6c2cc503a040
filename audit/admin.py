from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from audit import approvals
from audit.models import ApprovalRequest, AuditEvent, JobRun
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


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    """The queue of changes waiting for a second person. Decided with the buttons on a request's page, which call
    audit.approvals (the requester is refused there, not here)."""

    list_display = ("id", "state", "action", "summary", "requested_by_name", "created_at", "decided_by",
                    "decided_at")
    list_filter = ("state", "action", ("created_at", admin.DateFieldListFilter))
    search_fields = ("summary", "requested_by_name", "justification", "comment", "subject_id")
    list_select_related = ("decided_by",)
    readonly_fields = ["subject", *(f.name for f in ApprovalRequest._meta.fields)]

    @admin.display(description="subject (what is to be approved)")
    def subject(self, obj: ApprovalRequest) -> str:
        app_label, _, model = obj.subject_type.partition(".")
        try:
            link = reverse(f"admin:{app_label}_{model}_change", args=[obj.subject_id])
        except NoReverseMatch:
            return f"{obj.subject_type}:{obj.subject_id}"
        return format_html('<a href="{}">{}</a> (its page shows the details: findings, reports, checks)', link,
                           obj.summary or obj.subject_id)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and ("_approve" in request.POST or "_reject" in request.POST):
            obj = self.get_object(request, object_id)
            if obj is None:
                return redirect("admin:audit_approvalrequest_changelist")
            comment = request.POST.get("decision_comment", "")
            try:
                if "_approve" in request.POST:
                    approvals.approve(obj, request.user, comment)
                else:
                    approvals.reject(obj, request.user, comment)
            except approvals.ApprovalError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"request {obj.pk} {obj.state if obj.state != 'pending' else 'decided'}")
            return redirect(request.path)
        return super().change_view(request, object_id, form_url, extra_context)
