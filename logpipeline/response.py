"""Automatic response: the seam through which a detection becomes an emergency rule.

This app never imports ``waf_config``. Whoever builds emergency rules registers one callable at start-up
(e.g. in its ``AppConfig.ready``)::

    from logpipeline.response import register_responder

    def create_emergency_rule(request: ResponseRequest) -> dict:
        ...  # audited, pushed, expiring at now + request.ttl_seconds
        return {"rule_id": rule.pk}

    register_responder(create_emergency_rule)

``respond`` applies the detector's policy:

- ``notify``: a notification only;
- ``count``: an emergency rule with ``action="log"`` (counts matches, blocks nothing) plus the notification;
- ``block``: an emergency rule with ``action="block"`` plus the notification.

The allow list always wins: a pattern touching an allow-listed address is refused here, whatever the detector
says. With ``simulate`` on, the rule the policy would have requested is recorded (``ResponseAction`` with outcome
``simulated``) and nothing else happens. The TTL doubles for each earlier rule on the same pattern, up to the
detector's maximum. Every outcome lands in the incident's timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.utils import timezone

from logpipeline.correlation import Detection
from logpipeline.detectors import Config, DetectorConfig
from logpipeline.models import Incident, IncidentEntry, ResponseAction

logger = logging.getLogger(__name__)

SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass(frozen=True)
class ResponseRequest:
    match_field: str  # a Gateway field: "ip" (an address or CIDR) or "uri" (a Rust-regex pattern)
    pattern: str
    action: str  # "block" or "log" (count only)
    ttl_seconds: int
    reason: str
    detector: str
    incident_id: int


Responder = Callable[[ResponseRequest], dict[str, Any] | None]
_responder: Responder | None = None


def register_responder(responder: Responder | None) -> None:
    """Install (or with None remove) the callable that creates emergency rules."""
    global _responder
    _responder = responder


def registered_responder() -> Responder | None:
    return _responder


def rule_for(detection: Detection) -> tuple[str, str] | None:
    """(match_field, pattern) a detection can be answered with; None for route-wide ones (never auto-blocked)."""
    if detection.subject_kind in ("ip", "network"):
        return "ip", detection.subject
    return None


def respond(det: DetectorConfig, detection: Detection, incident: Incident, config: Config) -> ResponseAction | None:
    notify(incident, detection)
    if det.response == "notify":
        return None
    target = rule_for(detection)
    if target is None:
        return None
    match_field, pattern = target
    action = "block" if det.response == "block" else "log"
    earlier = ResponseAction.objects.filter(
        pattern=pattern, outcome=ResponseAction.Outcome.REQUESTED).count()
    ttl = min(det.max_block_ttl_seconds, det.block_ttl_seconds * (2 ** min(earlier, 20)))
    request = ResponseRequest(match_field=match_field, pattern=pattern, action=action, ttl_seconds=ttl,
                              reason=f"{detection.event_type} {pattern}: {detection.count} in "
                                     f"{detection.window_seconds}s (incident #{incident.pk})",
                              detector=det.name, incident_id=incident.pk)
    result: dict[str, Any] = {"request": asdict(request)}
    if config.overlaps_allow_list(pattern):
        outcome = ResponseAction.Outcome.REFUSED_ALLOW_LIST
    elif det.simulate:
        outcome = ResponseAction.Outcome.SIMULATED
    elif _responder is None:
        outcome = ResponseAction.Outcome.NO_RESPONDER
    else:
        try:
            result["responder"] = _responder(request) or {}
            outcome = ResponseAction.Outcome.REQUESTED
        except Exception as exc:  # the responder's failure must not lose the detection
            logger.exception("responder failed for incident %s", incident.pk)
            result["error"] = f"{type(exc).__name__}: {exc}"[:500]
            outcome = ResponseAction.Outcome.FAILED
    response = ResponseAction.objects.create(
        incident=incident, detector=det.name, policy=det.response, match_field=match_field, pattern=pattern,
        ttl_seconds=ttl, outcome=outcome, result=result)
    verb = {"simulated": "would have requested", "requested": "requested", "allow_listed": "refused (allow list)",
            "no_responder": "could not request (no responder)", "failed": "failed to request"}[outcome]
    IncidentEntry.objects.create(incident=incident, at=timezone.now(), kind="response",
                                 text=f"{verb} {action} {match_field}={pattern} for {ttl}s",
                                 data={"response_id": response.pk, "outcome": outcome})
    return response


def notify(incident: Incident, detection: Detection) -> int:
    """A pending notification per matching channel, through the integrations service (the only writer of those
    rows), deduplicated per incident and detection kind."""
    from integrations.services import Severity
    from integrations.services import notify as send

    return send("security.incident", Severity(incident.severity), incident.title[:300],
                dedup_key=f"incident:{incident.pk}:{detection.event_type}",
                context={"incident": incident.pk, "event_type": detection.event_type, "subject": detection.subject,
                         "count": detection.count, "instances": detection.instances})
