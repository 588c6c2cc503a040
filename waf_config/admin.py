from __future__ import annotations

from django.contrib import admin

from waf_config.models import Approval, Deployment, EmergencyRule, ReplayRun, RuleSet, RuleSetVersion
from worker_project.admin_base import ReadOnlyAdmin, ReadOnlyInline


class VersionInline(ReadOnlyInline):
    model = RuleSetVersion
    fields = ("number", "validation_status", "author", "created_at", "checksum")
    readonly_fields = fields
    ordering = ("-number",)


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "description")
    inlines = [VersionInline]


@admin.register(RuleSetVersion)
class RuleSetVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable: a change is a new version, a rollback deploys an older one."""

    list_display = ("rule_set", "number", "validation_status", "author", "created_at", "checksum")
    list_filter = ("validation_status", "rule_set__kind", "rule_set")
    search_fields = ("rule_set__name", "comment", "checksum", "content")
    list_select_related = ("rule_set", "author")
    readonly_fields = [f.name for f in RuleSetVersion._meta.fields]


@admin.register(ReplayRun)
class ReplayRunAdmin(ReadOnlyAdmin):
    list_display = ("version", "baseline", "requests_replayed", "newly_blocked", "newly_allowed", "started_at",
                    "finished_at")
    list_filter = ("version__rule_set",)
    search_fields = ("version__rule_set__name",)
    list_select_related = ("version__rule_set", "baseline__rule_set")


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = ("version", "reviewer", "approved", "created_at")
    list_filter = ("approved",)
    search_fields = ("version__rule_set__name", "reviewer__username", "comment")
    list_select_related = ("version__rule_set", "reviewer")


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("version", "group", "stage", "state", "requested_by", "created_at", "finished_at")
    list_filter = ("stage", "state", "group")
    search_fields = ("version__rule_set__name", "group__name")
    list_select_related = ("version__rule_set", "group", "requested_by")


@admin.register(EmergencyRule)
class EmergencyRuleAdmin(admin.ModelAdmin):
    list_display = ("match_field", "pattern", "action", "reason", "created_by", "created_at", "expires_at",
                    "withdrawn_at")
    list_filter = ("action", "match_field", ("withdrawn_at", admin.EmptyFieldListFilter))
    search_fields = ("pattern", "reason", "created_by")
    raw_id_fields = ("incident",)
    readonly_fields = ("created_at",)
