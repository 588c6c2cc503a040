from __future__ import annotations

import ipaddress
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from logpipeline.detectors import invalidate_config
from logpipeline.models import (
    AllowListEntry,
    Detector,
    ImportCheckpoint,
    Incident,
    IncidentEntry,
    IncidentState,
    IntakeSource,
    LogArchive,
    MalformedSample,
    RequestLog,
    ResponseAction,
    SecurityEvent,
    ShipOffset,
)
from worker_project.admin_base import ReadOnlyAdmin, ReadOnlyInline


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
    list_display = ("timestamp", "event_type", "severity", "subject", "client_ip", "detector", "gateway_instance",
                    "incident")
    list_filter = ("severity", "event_type", "detector")
    search_fields = ("=client_ip", "subject", "rule_id", "description", "gateway_instance")
    date_hierarchy = "timestamp"
    list_select_related = ("incident",)
    show_full_result_count = False


class IncidentEntryInline(ReadOnlyInline):
    model = IncidentEntry
    fields = ("at", "kind", "text")
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "timeline"


class SecurityEventInline(ReadOnlyInline):
    model = SecurityEvent
    fields = ("timestamp", "event_type", "severity", "gateway_instance", "description")
    readonly_fields = fields
    verbose_name_plural = "evidence: security events"


class ResponseActionInline(ReadOnlyInline):
    model = ResponseAction
    fields = ("created_at", "detector", "policy", "match_field", "pattern", "ttl_seconds", "outcome")
    readonly_fields = fields
    show_change_link = False


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """People acknowledge, mitigate or close incidents (the actions, recorded in the timeline); what the detectors
    found stays as it was."""

    list_display = ("id", "title", "severity", "state", "detector", "subject", "opened_at", "last_event_at",
                    "closed_at")
    list_filter = ("state", "severity", "detector")
    search_fields = ("title", "summary", "detector", "subject")
    date_hierarchy = "opened_at"
    fields = ("title", "severity", "state", "detector", "subject", "source_ips", "gateway_instances", "summary",
              "evidence_samples", "opened_at", "last_event_at", "closed_at")
    readonly_fields = ("title", "state", "detector", "subject", "source_ips", "gateway_instances", "summary",
                       "evidence_samples", "opened_at", "last_event_at", "closed_at")
    inlines = (IncidentEntryInline, SecurityEventInline, ResponseActionInline)
    actions = ("acknowledge", "mitigate", "close")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # incidents come from detections

    @admin.display(description="evidence")
    def evidence_samples(self, obj: Incident) -> str:
        rows = []
        for detection in (obj.evidence or {}).get("detections", []):
            samples = "; ".join(detection.get("samples", []))[:600]
            rows.append((detection.get("event_type", ""), detection.get("count", ""), detection.get("instances", {}),
                         samples))
        if not rows:
            return "-"
        return format_html("<table>{}</table>", format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", rows))

    def _move(self, request: HttpRequest, queryset: QuerySet[Incident], state: str) -> None:
        from logpipeline.incidents import change_state

        moved = sum(change_state(i, state, actor=request.user.get_username()) for i in queryset)
        self.message_user(request, f"{moved} incident(s) {state}", messages.SUCCESS)

    @admin.action(description="Acknowledge selected incidents")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._move(request, queryset, IncidentState.ACKNOWLEDGED)

    @admin.action(description="Mark selected incidents mitigated")
    def mitigate(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._move(request, queryset, IncidentState.MITIGATED)

    @admin.action(description="Close selected incidents")
    def close(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._move(request, queryset, IncidentState.CLOSED)


@admin.register(IncidentEntry)
class IncidentEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "incident", "kind", "text")
    list_filter = ("kind",)
    search_fields = ("text",)
    list_select_related = ("incident",)


@admin.register(ResponseAction)
class ResponseActionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "incident", "detector", "policy", "match_field", "pattern", "ttl_seconds",
                    "outcome")
    list_filter = ("outcome", "policy", "detector")
    search_fields = ("pattern", "detector")
    list_select_related = ("incident",)


class DetectorForm(forms.ModelForm):
    class Meta:
        model = Detector
        fields = ("name", "kind", "enabled", "threshold", "window_seconds", "severity", "params", "response",
                  "simulate", "block_ttl_seconds", "max_block_ttl_seconds", "description")

    def clean_params(self) -> dict[str, Any]:
        params = self.cleaned_data.get("params") or {}
        if not isinstance(params, dict):
            raise forms.ValidationError("params must be a JSON object")
        if "paths" in params:
            import re

            try:
                re.compile(str(params["paths"]))
            except re.error as exc:
                raise forms.ValidationError(f"paths is not a valid pattern: {exc}") from None
        return params


@admin.register(Detector)
class DetectorAdmin(admin.ModelAdmin):
    """Thresholds, windows and response policy per detector; the engine picks changes up within seconds."""

    form = DetectorForm
    list_display = ("name", "kind", "enabled", "threshold", "window_seconds", "severity", "response", "simulate",
                    "block_ttl_seconds", "updated_at")
    list_editable = ("enabled", "threshold", "window_seconds", "response", "simulate")
    list_filter = ("kind", "enabled", "response", "simulate")
    search_fields = ("name", "description")

    def save_model(self, request: HttpRequest, obj: Detector, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        invalidate_config()


class AllowListForm(forms.ModelForm):
    class Meta:
        model = AllowListEntry
        fields = ("cidr", "note")

    def clean_cidr(self) -> str:
        value = self.cleaned_data["cidr"].strip()
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise forms.ValidationError(f"{value!r} is not an IP address or network") from None


@admin.register(AllowListEntry)
class AllowListEntryAdmin(admin.ModelAdmin):
    form = AllowListForm
    list_display = ("cidr", "note", "created_at")
    search_fields = ("cidr", "note")

    def save_model(self, request: HttpRequest, obj: AllowListEntry, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        invalidate_config()


class MalformedSampleInline(ReadOnlyInline):
    model = MalformedSample
    fields = ("created_at", "reason", "length", "excerpt")
    readonly_fields = fields
    show_change_link = False
    verbose_name_plural = "malformed samples (newest)"


@admin.register(IntakeSource)
class IntakeSourceAdmin(admin.ModelAdmin):
    """Senders, their counters and rejected-line samples. Tokens: ``manage.py log_intake_token INSTANCE``."""

    list_display = ("instance_id", "kind", "enabled", "accepted", "malformed", "malformed_share", "batches",
                    "lines_per_minute", "last_seen")
    list_filter = ("kind", "enabled")
    search_fields = ("instance_id",)
    fields = ("instance_id", "kind", "enabled", "accepted", "malformed", "batches", "first_seen", "last_seen")
    readonly_fields = ("instance_id", "kind", "accepted", "malformed", "batches", "first_seen", "last_seen")
    inlines = (MalformedSampleInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created by intake, or with a token by the management command

    @admin.display(description="malformed %")
    def malformed_share(self, obj: IntakeSource) -> str:
        total = obj.accepted + obj.malformed
        return f"{100.0 * obj.malformed / total:.2f}" if total else "-"

    @admin.display(description="lines/min (lifetime)")
    def lines_per_minute(self, obj: IntakeSource) -> str:
        if not obj.first_seen or not obj.last_seen:
            return "-"
        minutes = max((obj.last_seen - obj.first_seen).total_seconds(), 60.0) / 60.0
        return f"{(obj.accepted + obj.malformed) / minutes:.0f}"


@admin.register(MalformedSample)
class MalformedSampleAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "source", "reason", "length", "excerpt_start")
    list_filter = ("reason",)
    search_fields = ("reason", "excerpt")
    list_select_related = ("source",)

    @admin.display(description="excerpt")
    def excerpt_start(self, obj: MalformedSample) -> str:
        return obj.excerpt[:120]


@admin.register(ImportCheckpoint)
class ImportCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("path", "offset", "lines", "malformed", "finished", "updated_at")
    list_filter = ("finished",)
    search_fields = ("path", "fingerprint")


@admin.register(LogArchive)
class LogArchiveAdmin(ReadOnlyAdmin):
    list_display = ("period_start", "period_end", "part", "rows", "bytes", "path", "sha256", "created_at")
    search_fields = ("path", "sha256")
    date_hierarchy = "period_start"



@admin.register(ShipOffset)
class ShipOffsetAdmin(ReadOnlyAdmin):
    """Where each agent's shipped log stands: what the Worker stored and acknowledged, per instance and source."""

    list_display = ("instance_id", "source", "offset_end", "batches", "duplicates", "updated_at")
    search_fields = ("instance_id", "source")
