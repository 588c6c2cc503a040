"""Emergency rules: an IP, a CIDR or a pattern blocked (or only counted) for a while, pushed at once.

Made by a person (admin, ``emergency_rule`` command, API) or by automation (the correlation engine calls
``create_emergency_rule(..., actor="logpipeline.correlation")``): no approval wait, but audited. Pushed to every
group as the ``emergency_rules`` resource; ``withdraw_expired_rules`` (a beat job) withdraws them at expiry, and the
builder already leaves out a rule whose ``expires_at`` has passed, so a late job never prolongs one.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import record_event
from gateways.models import GatewayGroup
from gateways.services import publish_desired_state, register_resource
from waf_config.formats import is_known_field
from waf_config.models import EmergencyAction, EmergencyKind, EmergencyRule
from waf_config.rust_regex import rust_regex_error

from .common import WafError, actor_of, require_perm

RESOURCE = "emergency_rules"
CREATE_PERMISSION = "waf_config.add_emergencyrule"
WITHDRAW_PERMISSION = "waf_config.change_emergencyrule"


def _normalise(kind: str, value: str, match_field: str) -> tuple[str, str, str]:
    value = value.strip()
    if kind in (EmergencyKind.IP, EmergencyKind.CIDR):
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise WafError(f"{value!r} is not an IP address or CIDR network") from None
        if net.num_addresses == 1 and "/" not in value:
            return EmergencyKind.IP, str(net.network_address), "ip"
        if net.prefixlen == 0:
            raise WafError(f"{value!r} would block every address")
        return EmergencyKind.CIDR, str(net), "ip"
    if kind == EmergencyKind.PATTERN:
        if not is_known_field(match_field) or match_field == "ip":
            raise WafError(f"{match_field!r} is not a Gateway field a pattern can match (uri, user_agent, "
                           "header.<Name>, query.<name>, …)")
        error = rust_regex_error(value)
        if error is not None:
            raise WafError(f"pattern {value!r} is an {error}")
        if not value:
            raise WafError("an empty pattern matches every request")
        return EmergencyKind.PATTERN, value, match_field
    raise WafError(f"unknown emergency rule kind {kind!r} (ip, cidr, pattern)")


def create_emergency_rule(value: str, *, actor: Any, reason: str, kind: str = EmergencyKind.IP,
                          match_field: str = "ip", action: str = EmergencyAction.BLOCK,
                          expires_in: timedelta | None = None, expires_at: datetime | None = None,
                          incident: Any = None) -> EmergencyRule:
    """Create and push at once. ``actor``: a user (needs the permission) or an automation's name."""
    require_perm(actor, CREATE_PERMISSION, "create an emergency rule")
    if not reason.strip():
        raise WafError("an emergency rule needs a reason")
    if action not in EmergencyAction.values:
        raise WafError(f"action {action!r}: use block, or log to count only")
    kind, value, match_field = _normalise(kind, value, match_field)
    now = timezone.now()
    expires = expires_at or (now + (expires_in or timedelta(hours=1)))
    if expires <= now:
        raise WafError("expires_at is in the past")
    if expires - now > timedelta(seconds=settings.WAF_EMERGENCY_MAX_SECONDS):
        raise WafError(f"an emergency rule lives at most {settings.WAF_EMERGENCY_MAX_SECONDS}s; make a rule-set "
                       "version for anything longer")
    who = actor_of(actor)
    with transaction.atomic():
        rule = EmergencyRule.objects.create(
            kind=kind, match_field=match_field, pattern=value, action=action, reason=reason[:500],
            created_by=who.name, created_by_type=who.type, expires_at=expires, incident=incident)
        record_event(who, "waf.emergency_rule_created", obj=rule,
                     after={"kind": kind, "value": value, "field": match_field, "action": action,
                            "expires_at": expires.isoformat(), "reason": reason[:500]},
                     summary=f"emergency {action} {kind} {value} until {expires:%Y-%m-%d %H:%M:%S} UTC"[:500])
        publish_all()
    return rule


def withdraw_emergency_rule(rule: EmergencyRule, actor: Any, reason: str = "withdrawn") -> bool:
    require_perm(actor, WITHDRAW_PERMISSION, "withdraw an emergency rule")
    who = actor_of(actor)
    with transaction.atomic():
        n = EmergencyRule.objects.filter(pk=rule.pk, withdrawn_at__isnull=True).update(
            withdrawn_at=timezone.now(), withdrawn_by=who.name)
        if n:
            record_event(who, "waf.emergency_rule_withdrawn", obj=rule, after={"reason": reason[:500]},
                         summary=f"emergency rule {rule} withdrawn: {reason}"[:500])
            publish_all()
    return bool(n)


def withdraw_expired_rules(actor: str = "waf_config.withdraw_expired_rules") -> int:
    """The beat job: withdraw every live rule past its expiry (a conditional update: safe to run twice)."""
    now = timezone.now()
    with transaction.atomic():
        expired = list(EmergencyRule.objects.select_for_update(skip_locked=True)
                       .filter(withdrawn_at__isnull=True, expires_at__lte=now))
        if not expired:
            return 0
        EmergencyRule.objects.filter(pk__in=[r.pk for r in expired]).update(withdrawn_at=now, withdrawn_by=actor)
        for rule in expired:
            record_event(actor_of(actor), "waf.emergency_rule_expired", obj=rule,
                         after={"expired_at": rule.expires_at.isoformat()},
                         summary=f"emergency rule {rule} expired and was withdrawn"[:500])
        publish_all()
    return len(expired)


def publish_all() -> None:
    for group in GatewayGroup.objects.all():
        publish_desired_state(RESOURCE, group, actor="waf_config.emergency")


def live_rules() -> list[EmergencyRule]:
    # emergency_live_idx: withdrawn_at IS NULL, by expires_at
    return list(EmergencyRule.objects.filter(withdrawn_at__isnull=True, expires_at__gt=timezone.now())
                .order_by("expires_at", "pk"))


def build(group: GatewayGroup) -> dict[str, Any]:
    rules = []
    for rule in live_rules():
        value = rule.pattern if rule.kind != EmergencyKind.PATTERN else f"{rule.match_field}:{rule.pattern}"
        rules.append({"id": str(rule.pk), "kind": rule.kind, "value": value, "action": rule.action,
                      "expires_at": int(rule.expires_at.timestamp()), "reason": rule.reason})
    return {"rules": rules}


def register_resources() -> None:
    register_resource(RESOURCE, build)
