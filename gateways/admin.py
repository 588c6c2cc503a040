"""The fleet in admin: instances (desired vs acked vs rejected per type), groups, versions (summary only),
credentials (revoke). Nothing here shows a payload: it holds private keys."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from .models import GatewayCredential, GatewayGroup, GatewayInstance, InstanceResourceState, ResourceVersion
from .services import (
    CredentialError,
    GroupError,
    create_group,
    desired_version,
    move_credential,
    resync_instances,
    revoke_credentials,
)


class ResourceStateInline(admin.TabularInline):
    model = InstanceResourceState
    extra = 0
    can_delete = False
    fields = ("resource_type", "desired", "sent_version", "acked_version", "acked_at", "rejected_version",
              "rejected_error", "last_converge_seconds")
    readonly_fields = fields

    @admin.display(description="desired")
    def desired(self, obj: InstanceResourceState) -> int | None:
        v = desired_version(obj.resource_type, obj.instance.group_id)
        return v.pk if v else None

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(GatewayInstance)
class GatewayInstanceAdmin(admin.ModelAdmin):
    list_display = ("instance_id", "group", "connected", "last_seen", "agent_version", "converged", "rejected")
    list_filter = ("group", "connected")
    search_fields = ("instance_id", "client_identity", "peer")
    readonly_fields = [f.name for f in GatewayInstance._meta.fields]
    inlines = [ResourceStateInline]
    actions = ["resync"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[GatewayInstance]:
        return super().get_queryset(request).select_related("group").prefetch_related("resource_states")

    def _desired(self, obj: GatewayInstance) -> dict[str, int]:
        rows = ResourceVersion.objects.filter(group_id=obj.group_id).order_by("resource_type", "-id")
        out: dict[str, int] = {}
        for rtype, vid in rows.values_list("resource_type", "id"):
            out.setdefault(rtype, vid)
        return out

    @admin.display(description="desired / acked per type")
    def converged(self, obj: GatewayInstance) -> str:
        states = {s.resource_type: s for s in obj.resource_states.all()}
        rows = []
        for rtype, vid in sorted(self._desired(obj).items()):
            st = states.get(rtype)
            acked = st.acked_version if st else None
            mark = "✓" if acked is not None and acked >= vid else "…"
            rows.append((rtype, vid, acked if acked is not None else "-", mark))
        return format_html_join(", ", "{} {}/{} {}", rows) or "-"

    @admin.display(description="rejected (parked)")
    def rejected(self, obj: GatewayInstance) -> str:
        rows = [(s.resource_type, s.rejected_version, s.rejected_error[:120]) for s in obj.resource_states.all()
                if s.rejected_version is not None]
        return format_html_join("; ", "{} v{}: {}", rows) or "-"

    @admin.action(description="Resync: forget sent and parked versions, resend on the next reconcile")
    def resync(self, request: HttpRequest, queryset: QuerySet[GatewayInstance]) -> None:
        n = resync_instances(queryset.values_list("pk", flat=True), actor=request.user)
        self.message_user(request, f"resync requested for {queryset.count()} instance(s) ({n} resource states)",
                          messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(GatewayGroup)
class GatewayGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "instances_total", "instances_connected")
    search_fields = ("name",)

    def get_readonly_fields(self, request: HttpRequest, obj: GatewayGroup | None = None) -> tuple[str, ...]:
        return ("name",) if obj is not None else ()  # credentials and versions refer to it by row, not name

    def save_model(self, request: HttpRequest, obj: GatewayGroup, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        try:  # one path for a new group: audited, and every resource type built for it
            group = create_group(obj.name, obj.description, actor=request.user)
        except GroupError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            raise
        obj.pk = group.pk

    @admin.display(description="instances")
    def instances_total(self, obj: GatewayGroup) -> int:
        return obj.instances.count()

    @admin.display(description="connected")
    def instances_connected(self, obj: GatewayGroup) -> int:
        return obj.instances.filter(connected=True).count()


@admin.register(ResourceVersion)
class ResourceVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "resource_type", "group", "checksum_short", "created_by", "created_at")
    list_filter = ("resource_type", "group")
    fields = ("id", "resource_type", "group", "checksum", "summary", "created_by", "created_at")
    readonly_fields = fields  # never the payload

    def get_queryset(self, request: HttpRequest) -> QuerySet[ResourceVersion]:
        return super().get_queryset(request).select_related("group").defer("payload")

    @admin.display(description="checksum")
    def checksum_short(self, obj: ResourceVersion) -> str:
        return obj.checksum[:12]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class CredentialActionForm(ActionForm):
    group = forms.ModelChoiceField(GatewayGroup.objects.all(), required=False, help_text="for “Move to group”")
    reason = forms.CharField(required=False, max_length=200, help_text="for “Revoke” (kept in the audit trail)")


@admin.register(GatewayCredential)
class GatewayCredentialAdmin(admin.ModelAdmin):
    list_display = ("name", "group", "serial", "not_after", "created_at", "revoked_at", "revoked_reason")
    list_filter = ("group", "revoked_at")
    search_fields = ("name", "serial", "fingerprint_sha256")
    readonly_fields = ("name", "group", "serial", "fingerprint_sha256", "not_after", "created_at", "revoked_at",
                       "revoked_reason")
    actions = ["revoke", "move"]
    action_form = CredentialActionForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[GatewayCredential]:
        return super().get_queryset(request).select_related("group")

    @admin.action(description="Revoke: refuse these client certificates on every RPC and close their streams")
    def revoke(self, request: HttpRequest, queryset: QuerySet[GatewayCredential]) -> None:
        n = revoke_credentials(list(queryset), actor=request.user, reason=request.POST.get("reason", ""))
        self.message_user(request, f"revoked {n} credential(s); their open streams are being closed",
                          messages.SUCCESS)

    @admin.action(description="Move to group: the Gateway reconnects into the chosen group")
    def move(self, request: HttpRequest, queryset: QuerySet[GatewayCredential]) -> None:
        group = GatewayGroup.objects.filter(pk=request.POST.get("group") or 0).first()
        if group is None:
            self.message_user(request, "choose the group to move to", messages.ERROR)
            return
        try:
            for cred in queryset:
                move_credential(cred, group.name, actor=request.user)
        except CredentialError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"moved {queryset.count()} credential(s) to {group.name}", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued by `manage.py issue_gateway_cert`
