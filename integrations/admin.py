from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from integrations.models import (
    AlertThrottle,
    Notification,
    NotificationChannel,
    ThreatAllowEntry,
    ThreatFeed,
    ThreatIndicator,
    ThreatListPublication,
)
from worker_project.admin_base import ReadOnlyAdmin


class NotificationChannelForm(forms.ModelForm):
    """The secret is write-only: never shown back, replaced only when a new one is typed."""

    new_secret = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False),
        help_text="Webhook HMAC key, Slack webhook URL, PagerDuty routing key or SMTP password. "
                  "Leave empty to keep the current one.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")

    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "target", "enabled", "min_severity", "event_kinds", "options")

    def save(self, commit: bool = True) -> NotificationChannel:
        channel = super().save(commit=False)
        if self.cleaned_data.get("clear_secret"):
            channel.secret = None
        elif self.cleaned_data.get("new_secret"):
            channel.secret = self.cleaned_data["new_secret"]
        if commit:
            channel.save()
        return channel


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ("name", "kind", "target", "enabled", "min_severity", "has_secret", "created_at")
    list_filter = ("kind", "enabled", "min_severity")
    search_fields = ("name", "target")

    @admin.display(boolean=True, description="secret set")
    def has_secret(self, obj: NotificationChannel) -> bool:
        return bool(obj.secret)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", "kind", "target", "new_secret", "clear_secret", "enabled", "min_severity", "event_kinds",
                "options")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Delivery history: every notification with its status, attempts, last HTTP code and error."""

    list_display = ("created_at", "event_kind", "event_action", "severity", "channel", "status", "attempts",
                    "response_code", "sent_at", "title")
    list_filter = ("status", "severity", "event_kind", "event_action", "channel")
    search_fields = ("title", "dedupe_key", "incident_key", "event_kind", "error")
    date_hierarchy = "created_at"
    list_select_related = ("channel",)


@admin.register(ThreatFeed)
class ThreatFeedAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "format", "enabled", "last_status", "last_accepted", "last_fetched_at",
                    "last_error")
    list_filter = ("enabled", "format", "last_status")
    search_fields = ("name", "url")
    readonly_fields = ("etag", "last_modified", "last_fetched_at", "last_status", "last_accepted", "last_refused",
                       "last_error")


@admin.register(ThreatIndicator)
class ThreatIndicatorAdmin(ReadOnlyAdmin):
    list_display = ("network", "feed", "provenance", "first_seen", "last_seen")
    list_filter = ("feed",)
    search_fields = ("network",)
    list_select_related = ("feed",)


@admin.register(ThreatAllowEntry)
class ThreatAllowEntryAdmin(admin.ModelAdmin):
    list_display = ("network", "reason", "created_at")
    search_fields = ("network", "reason")


@admin.register(ThreatListPublication)
class ThreatListPublicationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "document", "entry_count", "version_id")

    @admin.display(description="entries")
    def entry_count(self, obj: ThreatListPublication) -> int:
        return len(obj.entries)


@admin.register(AlertThrottle)
class AlertThrottleAdmin(ReadOnlyAdmin):
    list_display = ("channel", "incident_key", "window_until", "suppressed")
    list_select_related = ("channel",)
