"""The responder wiring: a detection of the log pipeline becomes a real emergency rule (audited, pushed as the
``emergency_rules`` resource, linked to its incident) through ``waf_config.responder``."""

from __future__ import annotations

import time

import pytest

from audit.models import AuditEvent
from gateways.models import ResourceVersion
from logpipeline.detectors import invalidate_config
from logpipeline.models import Detector, Incident, ResponseAction
from logpipeline.response import register_responder, registered_responder
from logpipeline.services import ingest
from waf_config import responder
from waf_config.models import EmergencyRule

pytestmark = pytest.mark.django_db


def brute_force(ip: str, n: int = 12) -> list[str]:
    start = time.time() - 60
    return [f'{ip} - - [{time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i))}] '
            f'"POST /login HTTP/1.1" 401 10 "-" "Mozilla/5.0 (X11)"' for i in range(n)]


@pytest.fixture
def wired():
    responder.register()
    yield
    register_responder(None)


def test_waf_config_registers_the_responder_at_start_up() -> None:
    # installed by WafConfigConfig.ready (other tests may have swapped it since; re-wire to check the callable)
    responder.register()
    try:
        assert registered_responder() is responder.create_rule_for
    finally:
        register_responder(None)


def test_a_detection_becomes_a_pushed_expiring_emergency_rule(detectors, make_engine, wired) -> None:
    Detector.objects.filter(name="login-bruteforce").update(simulate=False, response="block", block_ttl_seconds=120)
    invalidate_config()
    versions_before = ResourceVersion.objects.filter(resource_type="emergency_rules").count()
    ingest("http", "gw-1", brute_force("203.0.113.77"), engine=make_engine())
    incident = Incident.objects.get(subject="203.0.113.77")
    rule = EmergencyRule.objects.get(pattern="203.0.113.77")
    assert (rule.kind, rule.action, rule.incident_id, rule.created_by) == (
        "ip", "block", incident.pk, "logpipeline.correlation")
    assert 110 <= (rule.expires_at - rule.created_at).total_seconds() <= 121
    action = ResponseAction.objects.get(incident=incident)
    assert action.outcome == "requested" and action.result["responder"]["emergency_rule"] == rule.pk
    assert AuditEvent.objects.filter(action="waf.emergency_rule_created", actor="logpipeline.correlation").exists()
    assert ResourceVersion.objects.filter(resource_type="emergency_rules").count() > versions_before  # published


def test_a_cidr_subject_becomes_a_cidr_rule(db, wired) -> None:
    from logpipeline.response import ResponseRequest

    out = responder.create_rule_for(ResponseRequest(match_field="ip", pattern="198.51.100.0/24", action="log",
                                                    ttl_seconds=10**9, reason="probing", detector="d",
                                                    incident_id=0))
    rule = EmergencyRule.objects.get(pk=out["emergency_rule"])
    assert (rule.kind, rule.pattern, rule.action, rule.incident_id) == ("cidr", "198.51.100.0/24", "log", None)
