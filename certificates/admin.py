"""Admin for certificates: what is served and until when, every attempt and its error, and the three actions
(renew now, revoke, roll back), each in the audit trail. Private keys are never shown."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from certificates.forms import AcmeAccountForm, CertificateForm, DnsUpdateServerForm
from certificates.models import (
    AcmeAccount,
    AcmeOrder,
    Certificate,
    CertificateIssuer,
    CertificateVersion,
    DnsUpdateServer,
)
from certificates.services import catalog
from certificates.services.renewal import clear_backoff
from certificates.services.versions import RollbackError, rollback
from worker_project.admin_base import ReadOnlyAdmin, ReadOnlyInline

# ---- accounts and DNS servers (secrets write-only) ------------------------------------------------------------

@admin.register(AcmeAccount)
class AcmeAccountAdmin(admin.ModelAdmin):
    form = AcmeAccountForm
    list_display = ("name", "directory_url", "registered", "eab_kid", "contact_email", "created_at")
    search_fields = ("name", "directory_url")
    readonly_fields = ("account_url", "terms_agreed", "created_at", "updated_at")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", "directory_url", "contact_email", "eab_kid", "new_eab_hmac_key", "tls_ca_bundle",
                "trust_roots_pem", "profile", *self.readonly_fields)

    @admin.display(boolean=True)
    def registered(self, obj: AcmeAccount) -> bool:
        return bool(obj.account_url)

    def save_model(self, request: HttpRequest, obj: AcmeAccount, form: Any, change: bool) -> None:
        catalog.save_acme_account(obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: AcmeAccount) -> None:
        catalog.delete_acme_account(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AcmeAccount]) -> None:
        for account in queryset:
            catalog.delete_acme_account(account, actor=request.user)


@admin.register(DnsUpdateServer)
class DnsUpdateServerAdmin(admin.ModelAdmin):
    form = DnsUpdateServerForm
    list_display = ("name", "server", "port", "zone", "tsig_key_name", "tsig_algorithm")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("name", "server", "port", "zone", "tsig_key_name", "tsig_algorithm", "new_tsig_secret",
                "propagation_timeout_seconds")

    def save_model(self, request: HttpRequest, obj: DnsUpdateServer, form: Any, change: bool) -> None:
        catalog.save_dns_server(obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: DnsUpdateServer) -> None:
        catalog.delete_dns_server(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DnsUpdateServer]) -> None:
        for server in queryset:
            catalog.delete_dns_server(server, actor=request.user)


# ---- certificates -------------------------------------------------------------------------------------------

class IssuerInline(admin.TabularInline):
    model = CertificateIssuer
    extra = 1
    fields = ("account", "priority")


class OrderInline(ReadOnlyInline):
    model = AcmeOrder
    fields = ("started_at", "account", "status", "error_type", "error", "finished_at")
    readonly_fields = fields
    ordering = ("-started_at",)
    max_num = 10


class VersionInline(ReadOnlyInline):
    model = CertificateVersion
    fk_name = "certificate"
    fields = ("created_at", "source", "serial_hex", "not_after", "retired_at", "revoked_at")
    readonly_fields = fields
    ordering = ("-created_at",)
    max_num = 10


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin):
    form = CertificateForm
    list_display = ("name", "common_name", "status", "not_after", "days_left", "issuer", "last_attempt_at",
                    "short_error")
    list_filter = ("state", "auto_renew", "challenge_type", "key_type", "gateway_group")
    search_fields = ("name", "common_name")
    list_select_related = ("current_version",)
    readonly_fields = ("state", "current_version", "not_after", "renew_after", "next_attempt_at",
                       "consecutive_failures", "last_attempt_at", "last_error")
    inlines = [IssuerInline, VersionInline, OrderInline]
    actions = ["renew_now", "revoke_current", "roll_back"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Certificate]:
        return super().get_queryset(request).prefetch_related("issuers")

    @admin.display(description="state", ordering="state")
    def status(self, obj: Certificate) -> str:
        if obj.not_after is not None and obj.not_after <= timezone.now():
            return "expired"
        return obj.state

    @admin.display(description="days left", ordering="not_after")
    def days_left(self, obj: Certificate) -> str:
        days = obj.days_left()
        return "—" if days is None else str(days)

    @admin.display(description="issuer")
    def issuer(self, obj: Certificate) -> str:
        issuers = list(obj.issuers.all())
        return issuers[0].name if issuers else "—"

    @admin.display(description="last error")
    def short_error(self, obj: Certificate) -> str:
        return (obj.last_error[:120] + "…") if len(obj.last_error) > 120 else obj.last_error

    def save_model(self, request: HttpRequest, obj: Certificate, form: Any, change: bool) -> None:
        catalog.save_certificate(obj, actor=request.user)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        before = catalog.issuer_names(form.instance)
        super().save_related(request, form, formsets, change)  # the issuer inline
        catalog.issuers_changed(form.instance, before, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: Certificate) -> None:
        catalog.delete_certificate(obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> None:
        for cert in queryset:
            catalog.delete_certificate(cert, actor=request.user)

    @admin.action(description="Renew now (skip the backoff)")
    def renew_now(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> None:
        from certificates.tasks import renew_certificate

        for cert in queryset:
            clear_backoff(cert, actor=request.user)
            transaction.on_commit(partial(renew_certificate.delay, cert.pk, force=True))
        self.message_user(request, f"Renewal enqueued for {queryset.count()} certificate(s).")

    @admin.action(description="Ask a second person to revoke the current version at the CA")
    def revoke_current(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> None:
        from certificates.services.changes import ChangeRefused, request_revocation

        for cert in queryset.select_related("current_version"):
            version = cert.current_version
            if version is None or version.account_id is None or version.revoked_at is not None:
                self.message_user(request, f"{cert.name}: nothing revocable is current", messages.WARNING)
                continue
            try:
                request_revocation(version, request.user, reason="unspecified",
                                   justification=f"revocation of {cert.name} asked in admin")
            except ChangeRefused as exc:
                self.message_user(request, f"{cert.name}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{cert.name}: revocation waits for a second person (Approval requests)")

    @admin.action(description="Roll back to the previous valid version")
    def roll_back(self, request: HttpRequest, queryset: QuerySet[Certificate]) -> None:
        now = timezone.now()
        for cert in queryset:
            older = CertificateVersion.objects.filter(certificate=cert, revoked_at__isnull=True,
                                                      not_after__gt=now).exclude(source="temporary")
            if cert.current_version_id is not None:
                older = older.exclude(pk=cert.current_version_id)
            previous = older.order_by("-created_at").first()
            if previous is None:
                self.message_user(request, f"{cert.name}: no older valid version", messages.WARNING)
                continue
            try:
                rollback(cert, previous, actor=request.user)
            except RollbackError as exc:
                self.message_user(request, f"{cert.name}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{cert.name}: now serving {previous.serial_hex}")


@admin.register(CertificateVersion)
class CertificateVersionAdmin(ReadOnlyAdmin):
    list_display = ("certificate", "source", "serial_hex", "not_before", "not_after", "account", "created_at",
                    "retired_at", "revoked_at")
    list_filter = ("source", "key_type")
    search_fields = ("certificate__name", "serial_hex", "fingerprint_sha256")
    list_select_related = ("certificate", "account")
    exclude = ("key_pem",)  # never shown
    actions = ["make_current"]

    @admin.action(description="Roll back: make this version current")
    def make_current(self, request: HttpRequest, queryset: QuerySet[CertificateVersion]) -> None:
        for version in queryset.select_related("certificate"):
            try:
                rollback(version.certificate, version, actor=request.user)
            except RollbackError as exc:
                self.message_user(request, f"{version}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"{version.certificate.name}: now serving {version.serial_hex}")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AcmeOrder)
class AcmeOrderAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "certificate", "account", "status", "error_type", "short_error", "finished_at")
    list_filter = ("status", "challenge_type", "account")
    search_fields = ("certificate__name", "error", "order_url")
    list_select_related = ("certificate", "account")
    exclude = ("key_pem",)  # never shown
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # ACME is HTTPS (and Django 6's default)

    @admin.display(description="error")
    def short_error(self, obj: AcmeOrder) -> str:
        return (obj.error[:160] + "…") if len(obj.error) > 160 else obj.error


from certificates import admin_requests  # noqa: E402,F401  (registers the request, policy and change admins)
