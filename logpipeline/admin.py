from __future__ import annotations

from django.contrib import admin

from logpipeline.models import Incident, LogArchive, RequestLog, SecurityEvent
from worker_project.admin_base import ReadOnlyAdmin


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "gateway_instance", "client_ip", "method", "host", "uri", "status_code",
                    "response_time_ms", "waf_action")
    list_filter = ("waf_action", "method", "status_code")
    search_fields = ("request_id", "=client_ip", "host", "uri", "gateway_instance", "waf_rule_id")
    date_hierarchy = "timestamp"
    show_full_result_count = False


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "event_type", "severity", "client_ip", "rule_id", "gateway_instance", "incident")
    list_filter = ("severity", "event_type")
    search_fields = ("=client_ip", "rule_id", "description", "gateway_instance")
    date_hierarchy = "timestamp"
    list_select_related = ("incident",)
    show_full_result_count = False


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """People close or mitigate incidents; what the detector found stays as it was."""

    list_display = ("id", "title", "severity", "state", "detector", "opened_at", "closed_at")
    list_filter = ("state", "severity", "detector")
    search_fields = ("title", "summary", "detector")
    date_hierarchy = "opened_at"
    readonly_fields = ("detector", "source_ips", "gateway_instances", "opened_at")


@admin.register(LogArchive)
class LogArchiveAdmin(ReadOnlyAdmin):
    list_display = ("period_start", "period_end", "rows", "bytes", "path", "sha256", "created_at")
    search_fields = ("path", "sha256")
    date_hierarchy = "period_start"
