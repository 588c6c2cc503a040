"""Wiring: the log pipeline's automatic response creates emergency rules here.

``logpipeline`` never imports ``waf_config``; it exposes ``register_responder``. This module (installed by
``WafConfigConfig.ready``) answers a ``ResponseRequest`` with ``create_emergency_rule`` as the automation
``logpipeline.correlation``: audited, pushed to every group at once, withdrawn at expiry by the beat job.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from logpipeline.response import ResponseRequest, register_responder

ACTOR = "logpipeline.correlation"


def create_rule_for(request: ResponseRequest) -> dict[str, Any]:
    from logpipeline.models import Incident
    from waf_config.models import EmergencyKind
    from waf_config.services.emergency import create_emergency_rule

    if request.match_field == "ip":
        kind = EmergencyKind.CIDR if "/" in request.pattern else EmergencyKind.IP
    else:
        kind = EmergencyKind.PATTERN
    ttl = max(1, min(int(request.ttl_seconds), int(settings.WAF_EMERGENCY_MAX_SECONDS)))
    rule = create_emergency_rule(
        request.pattern, actor=ACTOR, reason=f"[{request.detector}] {request.reason}", kind=kind,
        match_field=request.match_field, action=request.action, expires_in=timedelta(seconds=ttl),
        incident=Incident.objects.filter(pk=request.incident_id).first())
    return {"emergency_rule": rule.pk, "expires_at": rule.expires_at.isoformat()}


def register() -> None:
    register_responder(create_rule_for)
