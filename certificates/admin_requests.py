"""Admin for the approval workflow: certificate requests (the queue: who asked, why, policy and pre-flight, approve
or reject with a comment), policies per Gateway group, and risky changes. Every change calls
``certificates.services``; the four-eyes rule is enforced there, not here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from certificates.models import CertificateChange, CertificatePolicy, CertificateRequest, RequestState
from certificates.services import requests as request_service
from certificates.services.seams import approvals
from worker_project.admin_base import ReadOnlyAdmin

ApprovalError = approvals.ApprovalError


class CertificateRequestForm(forms.ModelForm):
    domains_text = forms.CharField(label="Domains", widget=forms.Textarea(attrs={"rows": 3}),
                                   help_text="one name per line, the first is the common name")

    class Meta:
        model = CertificateRequest
        fields = ("group", "issuer", "key_type", "challenge_type", "dns_server", "justification")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            names, _ = request_service.validate_request(
                self.cleaned_data["domains_text"].split(), data["group"], data["issuer"], data["challenge_type"],
                data.get("dns_server"))
        except request_service.RequestRefused as exc:
            raise forms.ValidationError(str(exc)) from exc
        data["domains"] = names
        if not (data.get("justification") or "").strip():
            self.add_error("justification", "say why the certificate is needed")
        return data


@admin.register(CertificateRequest)
class CertificateRequestAdmin(admin.ModelAdmin):
    """The queue: filter "pending" to see what waits; a request's page shows the checks and the decision."""

    list_display = ("id", "state", "names", "group", "requested_by_name", "source", "short_justification",
                    "preflight_result", "created_at")
    list_filter = ("state", "source", "group")
    search_fields = ("dedupe_key", "requested_by_name", "justification")
    list_select_related = ("group",)
    readonly_fields = ("domains", "group", "issuer", "key_type", "challenge_type", "dns_server", "justification",
                       "source", "requested_by_name", "state", "auto_approved", "certificate", "error",
                       "created_at", "decided_at", "finished_at", "preflight_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = CertificateRequestForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["domains_text", "group", "issuer", "key_type", "challenge_type", "dns_server", "justification"]
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="names")
    def names(self, obj: CertificateRequest) -> str:
        return ", ".join(obj.domains)

    @admin.display(description="why")
    def short_justification(self, obj: CertificateRequest) -> str:
        return obj.justification[:80]

    @admin.display(description="pre-flight")
    def preflight_result(self, obj: CertificateRequest) -> str:
        if not obj.preflight:
            return "—"
        failed = [c for c in obj.preflight if not c.get("ok")]
        return "pass" if not failed else f"FAIL ({len(failed)})"

    def save_model(self, request: HttpRequest, obj: CertificateRequest, form: Any, change: bool) -> None:
        data = form.cleaned_data
        filed = request_service.file_request(
            domains=data["domains"], group=data["group"], issuer=data["issuer"], requested_by=request.user,
            justification=data["justification"], key_type=data["key_type"], challenge_type=data["challenge_type"],
            dns_server=data.get("dns_server"))
        for field in ("pk", "domains", "state", "group_id", "requested_by_name"):
            setattr(obj, field, getattr(filed, field))

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # nothing related; the service saved the request

    def response_add(self, request: HttpRequest, obj: CertificateRequest, post_url_continue: Any = None
                     ) -> HttpResponse:
        filed = CertificateRequest.objects.get(pk=obj.pk)
        if filed.state == RequestState.REFUSED:
            messages.error(request, f"request {filed.pk} refused: {filed.error}")
        else:
            messages.success(request, f"request {filed.pk} filed: {filed.get_state_display()}")
        return redirect("admin:certificates_certificaterequest_change", filed.pk)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if request.method == "POST" and ("_approve" in request.POST or "_reject" in request.POST):
            obj = self.get_object(request, object_id)
            if obj is None:
                return redirect("admin:certificates_certificaterequest_changelist")
            comment = request.POST.get("decision_comment", "")
            try:
                if "_approve" in request.POST:
                    request_service.approve_request(obj, request.user, comment)
                else:
                    request_service.reject_request(obj, request.user, comment)
            except ApprovalError as exc:
                messages.error(request, str(exc))
            else:
                obj.refresh_from_db()
                messages.success(request, f"request {obj.pk}: {obj.get_state_display()}")
            return redirect(request.path)
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # the page is read-only; deciding needs the approve permission, checked by audit.approvals
        return super().has_view_permission(request, obj)


@admin.register(CertificatePolicy)
class CertificatePolicyAdmin(admin.ModelAdmin):
    list_display = ("group", "suffixes", "allow_wildcards", "max_names", "trusted_role", "gateway_requests_per_hour",
                    "on_demand")
    filter_horizontal = ("issuers",)

    @admin.display(description="allowed suffixes")
    def suffixes(self, obj: CertificatePolicy) -> str:
        return ", ".join(obj.allowed_suffixes)

    @admin.display(description="on-demand outcomes")
    def on_demand(self, obj: CertificatePolicy) -> str:
        try:
            counts = request_service.ondemand_counts(obj.group_id)
        except Exception:  # Redis down: the page still works
            return "?"
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "—"

    def save_model(self, request: HttpRequest, obj: CertificatePolicy, form: Any, change: bool) -> None:
        from certificates.services import seams

        super().save_model(request, obj, form, change)
        seams.record("certificate_policy.updated" if change else "certificate_policy.created", obj,
                     actor=request.user, summary=str(obj),
                     after={f: form.cleaned_data.get(f) for f in form.changed_data if f != "issuers"})


@admin.register(CertificateChange)
class CertificateChangeAdmin(ReadOnlyAdmin):
    """Risky changes (revoke, move, key export) and their state; decided under Approval requests."""

    list_display = ("id", "kind", "certificate", "target_group", "reason", "requested_by", "state", "created_at")
    list_filter = ("kind", "state")
