"""Admin for the rule-change flow: draft (a new version from the rule set's page), validate, replay, submit for
approval (decided in audit's approval queue), deploy, roll back; emergency rules. Every button calls a service."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from audit.approvals import ApprovalError
from waf_config.models import (
    ConfigDocument,
    ConfigVersion,
    Deployment,
    EmergencyRule,
    GroupVersion,
    ReplayRequest,
    ReplayRun,
    ReplayRunStatus,
    ReplaySet,
    RuleSet,
    RuleSetKind,
    RuleSetVersion,
)
from waf_config.services import deployment as deploy_service
from waf_config.services import emergency as emergency_service
from waf_config.services import versions as version_service
from waf_config.services.common import WafError
from worker_project.admin_base import ReadOnlyAdmin, ReadOnlyInline


class VersionInline(ReadOnlyInline):
    model = RuleSetVersion
    fields = ("number", "state", "validation_status", "author", "created_at", "checksum")
    readonly_fields = fields
    ordering = ("-number",)


class RuleSetForm(forms.ModelForm):
    new_content = forms.CharField(widget=forms.Textarea(attrs={"rows": 20, "cols": 110}), required=False,
                                  help_text="Draft a new immutable version with this exact file text (validated "
                                            "at once).")
    new_comment = forms.CharField(required=False, help_text="What the new version changes and why.")
    import_file = forms.FileField(
        required=False, help_text="Or import the Gateway's own file (waf-rules.yaml, gateway.yaml, a ModSecurity "
                                  ".conf) as a new version: YAML is normalised into what the Gateway's loader "
                                  "accepts (each change listed as a warning); a .conf is taken as it is.")

    class Meta:
        model = RuleSet
        fields = ("name", "kind", "description")


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    form = RuleSetForm
    list_display = ("name", "kind", "created_at")
    list_filter: ClassVar[tuple[str, ...]] = ("kind",)
    search_fields = ("name", "description")
    inlines = [VersionInline]

    def save_model(self, request: HttpRequest, obj: RuleSet, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        content = form.cleaned_data.get("new_content") or ""
        if content.strip():
            try:
                version = version_service.create_version(obj, content, request.user,
                                                         form.cleaned_data.get("new_comment") or "")
            except WafError as exc:
                messages.error(request, str(exc))
                return
            level = messages.SUCCESS if version.validation_status == "valid" else messages.WARNING
            messages.add_message(request, level, f"{version} drafted: {version.state}")
        upload = form.cleaned_data.get("import_file")
        if upload is not None:
            self._import(request, obj, upload)

    def _import(self, request: HttpRequest, obj: RuleSet, upload: Any) -> None:
        try:
            text = upload.read().decode("utf-8")
            version, report = version_service.import_version(obj, text, request.user, source=upload.name)
        except UnicodeDecodeError:
            messages.error(request, f"{upload.name} is not UTF-8 text; nothing was imported")
            return
        except WafError as exc:
            messages.error(request, str(exc))
            return
        for finding in report.warnings[:20]:
            messages.warning(request, f"import: {finding.message}")
        level = messages.SUCCESS if version.validation_status == "valid" else messages.ERROR
        messages.add_message(request, level, f"{version} imported from {upload.name}: {version.state} "
                                             f"({len(report.warnings)} import warnings; validation findings on "
                                             f"the version's page)")


@admin.register(ConfigDocument)
class ConfigDocumentAdmin(RuleSetAdmin):
    """gateway.yaml and ModSecurity files: the same flow as rule sets."""

    list_filter = ()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        kind = form.base_fields["kind"]
        assert isinstance(kind, forms.ChoiceField)  # a choices model field's form field
        kind.choices = [c for c in RuleSetKind.choices if c[0] != RuleSetKind.WAF_RULES]
        return form


def _findings_html(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "no findings"
    return format_html("<ul>{}</ul>", format_html_join(
        "", "<li><b>{}</b> [{}] {}</li>", ((f["severity"], f["code"], f["message"]) for f in findings[:200])))


@admin.register(RuleSetVersion)
class RuleSetVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable: a change is a new version (drafted from the rule set's page)."""

    list_display = ("__str__", "state", "validation_status", "author", "created_at", "checksum")
    list_filter = ("state", "validation_status", "rule_set__kind", "rule_set")
    search_fields = ("rule_set__name", "comment", "checksum", "content")
    list_select_related = ("rule_set", "author")
    readonly_fields = ["rule_set", "number", "state", "validation_status", "findings", "replay_report", "approval",
                       "author", "parent", "comment", "checksum", "created_at", "validated_at", "content"]
    actions = ["validate", "replay_latest_set", "submit_for_approval", "deploy", "roll_back_to"]

    @admin.display(description="validation findings")
    def findings(self, obj: RuleSetVersion) -> str:
        return _findings_html(obj.validation_errors)

    @admin.display(description="replay report (latest)")
    def replay_report(self, obj: RuleSetVersion) -> str:
        pending = format_html_join("", "<p>replay run {} on {}: <b>{}</b></p>", (
            (r.pk, r.replay_set or "-", r.progress) for r in obj.replays.exclude(
                status=ReplayRunStatus.DONE).order_by("-id")[:5]))
        run = obj.replays.filter(status=ReplayRunStatus.DONE).order_by("-id").first()
        if run is None:
            return format_html("{}{}", pending, "not replayed yet")
        report = run.report
        return pending + format_html(
            "<p>{} requests of set {}: <b>{}</b> newly blocked, <b>{}</b> newly allowed, {} changed; benign "
            "stopped {} of {} (false-positive estimate {}); attacks stopped {} of {}.</p><p>decisions now: {}</p>"
            "<pre>{}</pre>", run.requests_replayed, run.replay_set or "-", run.newly_blocked, run.newly_allowed,
            report.get("changed"), report.get("benign_stopped_new"), report.get("benign"),
            report.get("false_positive_rate_new"), report.get("attacks_stopped_new"), report.get("attacks"),
            json.dumps(report.get("decisions_new", {})),
            json.dumps(report.get("samples", {}), indent=1)[:6000])

    @admin.display(description="approval")
    def approval(self, obj: RuleSetVersion) -> str:
        from audit.models import ApprovalRequest

        rows = ApprovalRequest.objects.filter(subject_type=obj._meta.label_lower, subject_id=str(obj.pk))
        if not rows:
            return "not submitted"
        return format_html_join("<br>", '<a href="{}">{}</a> requested by {}: {} {}', (
            (reverse("admin:audit_approvalrequest_change", args=[r.pk]), r.state, r.requested_by_name,
             r.decided_by or "", r.comment) for r in rows))

    def _each(self, request: HttpRequest, queryset: QuerySet[RuleSetVersion], fn: Any, done: str) -> None:
        for version in queryset.select_related("rule_set"):
            try:
                fn(version)
            except (WafError, ApprovalError) as exc:
                messages.error(request, f"{version}: {exc}")
            else:
                messages.success(request, f"{version}: {done}")

    @admin.action(description="Validate")
    def validate(self, request: HttpRequest, queryset: QuerySet[RuleSetVersion]) -> None:
        self._each(request, queryset, version_service.validate_version, "validated")

    @admin.action(description="Replay against the newest replay set")
    def replay_latest_set(self, request: HttpRequest, queryset: QuerySet[RuleSetVersion]) -> None:
        replay_set = ReplaySet.objects.order_by("-created_at").first()
        if replay_set is None:
            messages.error(request, "no replay set: import one with manage.py import_replay_corpus")
            return
        if version_service.replay_in_background(replay_set):  # too big for a request: the task carries it
            self._each(request, queryset,
                       lambda v: version_service.request_replay(v, replay_set, request.user),
                       f"replay against {replay_set} ({replay_set.request_count} requests) queued; its progress "
                       "shows on this page and under Replay runs")
            return
        self._each(request, queryset, lambda v: version_service.replay_version(v, replay_set, request.user),
                   f"replayed against {replay_set}")

    @admin.action(description="Submit for approval")
    def submit_for_approval(self, request: HttpRequest, queryset: QuerySet[RuleSetVersion]) -> None:
        self._each(request, queryset, lambda v: version_service.submit_for_approval(v, request.user),
                   "submitted: a second person decides it in Approval requests")

    @admin.action(description="Deploy (canary group, soak, then every group)")
    def deploy(self, request: HttpRequest, queryset: QuerySet[RuleSetVersion]) -> None:
        self._each(request, queryset, lambda v: deploy_service.start_deployment(v, request.user), "rollout started")

    @admin.action(description="Roll every group back to this (earlier deployed) version")
    def roll_back_to(self, request: HttpRequest, queryset: QuerySet[RuleSetVersion]) -> None:
        self._each(request, queryset, lambda v: deploy_service.rollback_to(v, request.user), "groups pointed back")


@admin.register(ConfigVersion)
class ConfigVersionAdmin(RuleSetVersionAdmin):
    def get_queryset(self, request: HttpRequest) -> QuerySet[RuleSetVersion]:
        return super().get_queryset(request).exclude(rule_set__kind=RuleSetKind.WAF_RULES)


@admin.register(ReplaySet)
class ReplaySetAdmin(ReadOnlyAdmin):
    list_display = ("name", "request_count", "source", "created_at")
    search_fields = ("name", "source", "description")


@admin.register(ReplayRequest)
class ReplayRequestAdmin(ReadOnlyAdmin):
    list_display = ("replay_set", "position", "data")
    list_filter = ("replay_set",)
    list_select_related = ("replay_set",)


@admin.register(ReplayRun)
class ReplayRunAdmin(ReadOnlyAdmin):
    list_display = ("version", "baseline", "replay_set", "status", "progress", "newly_blocked", "newly_allowed",
                    "started_at", "finished_at")
    list_filter = ("status", "version__rule_set")
    search_fields = ("version__rule_set__name",)
    list_select_related = ("version__rule_set", "baseline__rule_set", "replay_set")


@admin.register(Deployment)
class DeploymentAdmin(ReadOnlyAdmin):
    list_display = ("version", "state", "canary_group", "groups", "outcome", "requested_by", "created_at",
                    "finished_at")
    list_filter = ("state",)
    search_fields = ("version__rule_set__name", "outcome")
    list_select_related = ("version__rule_set", "canary_group", "requested_by")
    readonly_fields = [f.name for f in Deployment._meta.fields]


@admin.register(GroupVersion)
class GroupVersionAdmin(ReadOnlyAdmin):
    list_display = ("group", "kind", "version", "deployment", "updated_at")
    list_filter = ("kind", "group")
    list_select_related = ("group", "version__rule_set")


class EmergencyRuleForm(forms.ModelForm):
    class Meta:
        model = EmergencyRule
        fields = ("kind", "pattern", "match_field", "action", "reason", "expires_at", "incident")


@admin.register(EmergencyRule)
class EmergencyRuleAdmin(admin.ModelAdmin):
    """Created here by a person (pushed at once, audited); never edited; withdrawn by the action or at expiry."""

    form = EmergencyRuleForm
    list_display = ("kind", "pattern", "action", "reason", "created_by", "created_at", "expires_at", "withdrawn_at")
    list_filter = ("action", "kind", ("withdrawn_at", admin.EmptyFieldListFilter))
    search_fields = ("pattern", "reason", "created_by")
    raw_id_fields = ("incident",)
    actions = ["withdraw"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # the list's actions, not edits

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: EmergencyRule, form: Any, change: bool) -> None:
        try:
            rule = emergency_service.create_emergency_rule(
                obj.pattern, actor=request.user, reason=obj.reason, kind=obj.kind, match_field=obj.match_field,
                action=obj.action, expires_at=obj.expires_at, incident=obj.incident)
        except WafError as exc:
            messages.error(request, str(exc))
            raise forms.ValidationError(str(exc)) from exc
        obj.pk = rule.pk

    @admin.action(description="Withdraw now")
    def withdraw(self, request: HttpRequest, queryset: QuerySet[EmergencyRule]) -> None:
        for rule in queryset:
            try:
                emergency_service.withdraw_emergency_rule(rule, request.user, "withdrawn in admin")
            except WafError as exc:
                messages.error(request, f"{rule}: {exc}")
