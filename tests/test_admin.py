"""Admin for the audit, WAF/config, log, analytics and integrations apps: lists, filters and search load,
history and immutable versions are read-only, secrets are write-only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent, JobRun
from audit.services import record_automation_event
from integrations.models import NotificationChannel
from waf_config.models import RuleSet, RuleSetVersion

pytestmark = pytest.mark.django_db

APPS = ("audit", "waf_config", "logpipeline", "analytics", "integrations")
READ_ONLY = {
    "audit.auditevent", "audit.jobrun", "waf_config.rulesetversion", "waf_config.replayrun", "audit.approvalrequest",
    "waf_config.deployment", "logpipeline.requestlog", "logpipeline.securityevent", "logpipeline.logarchive",
    "analytics.trafficrollup", "analytics.report", "integrations.notification", "integrations.threatindicator",
}


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("root", "root@example.invalid", "pw")
    client.force_login(user)
    return client


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_model_of_these_apps_is_registered() -> None:
    models = [m for a in APPS for m in apps.get_app_config(a).get_models()]
    missing = [m._meta.label for m in models if m not in admin.site._registry]
    assert missing == []


def test_changelists_load_with_search_and_filters(staff) -> None:
    record_automation_event("tests", "thing.done", summary="hello")
    JobRun.objects.create(task_id="t1", task_name="audit.beat_heartbeat", state="success", queue="maintenance")
    for app_label in APPS:
        for model in apps.get_app_config(app_label).get_models():
            model_admin = admin.site._registry[model]
            response = staff.get(url(model, "changelist"), {"q": "x"} if model_admin.search_fields else {})
            assert response.status_code == 200, f"{model._meta.label}: {response.status_code}"
            assert model_admin.list_display != ("__str__",), f"{model._meta.label} has no list columns"


def test_job_history_filters_by_task_state_and_queue(staff) -> None:
    JobRun.objects.create(task_id="a", task_name="audit.beat_heartbeat", state="success", queue="maintenance")
    JobRun.objects.create(task_id="b", task_name="certificates.renew", state="failure", queue="certificates",
                          error="ValueError: boom")

    def listed(**params: str) -> list[str]:
        response = staff.get(url(JobRun, "changelist"), params)
        return [run.task_id for run in response.context["cl"].result_list]

    assert listed(state="failure", queue="certificates") == ["b"]
    assert listed(task_name="audit.beat_heartbeat") == ["a"]
    assert listed(q="boom") == ["b"]
    since = (timezone.now() - timedelta(days=1)).isoformat()  # aware, as the date filter's own links are
    assert staff.get(url(JobRun, "changelist"), {"created_at__gte": since}).status_code == 200


def test_history_and_immutable_versions_are_read_only(staff) -> None:
    for label in READ_ONLY:
        model_admin = admin.site._registry[apps.get_model(label)]
        request = staff.get("/").wsgi_request
        request.user = User.objects.get(username="root")
        assert not model_admin.has_add_permission(request), label
        assert not model_admin.has_change_permission(request), label
        assert not model_admin.has_delete_permission(request), label

    event = record_automation_event("tests", "thing.done", summary="original")
    assert staff.get(url(AuditEvent, "add")).status_code == 403
    assert staff.post(url(AuditEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    page = staff.get(url(AuditEvent, "change", event.pk))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    staff.post(url(AuditEvent, "change", event.pk), {"summary": "rewritten"})
    assert AuditEvent.objects.get(pk=event.pk).summary == "original"

    rule_set = RuleSet.objects.create(name="base", kind="waf_rules")
    version = RuleSetVersion.objects.create(rule_set=rule_set, number=1, content="rules: []", checksum="c")
    staff.post(url(RuleSetVersion, "change", version.pk), {"content": "rules: [evil]"})
    assert RuleSetVersion.objects.get(pk=version.pk).content == "rules: []"


def test_channel_secret_is_write_only(staff) -> None:
    data = {"name": "ops", "kind": "webhook", "target": "https://hooks.example.invalid/x", "enabled": "on",
            "min_severity": "medium", "event_kinds": "[]", "new_secret": "hmac-s3cret-value"}
    response = staff.post(url(NotificationChannel, "add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = NotificationChannel.objects.get(name="ops")
    assert channel.secret == "hmac-s3cret-value"

    page = staff.get(url(NotificationChannel, "change", channel.pk)).content.decode()
    assert "hmac-s3cret-value" not in page
    staff.post(url(NotificationChannel, "change", channel.pk), {**data, "new_secret": ""})
    channel.refresh_from_db()
    assert channel.secret == "hmac-s3cret-value"  # empty means keep
    staff.post(url(NotificationChannel, "change", channel.pk), {**data, "new_secret": "", "clear_secret": "on"})
    channel.refresh_from_db()
    assert channel.secret is None
