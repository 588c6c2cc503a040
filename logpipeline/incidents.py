"""Detections become security events; related events roll into one incident per subject.

Related means the same subject (an IP, a network or a route) while its incident is not closed and saw an event
within ``LOG_INCIDENT_MERGE_HOURS``: an IP that probes paths, then tries SQL injection, then brute-forces the login
is one incident with three detections in its timeline. On PostgreSQL an advisory transaction lock per subject
makes two workers that detect the same subject at once share one incident.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from logpipeline.correlation import Detection
from logpipeline.detectors import Config, DetectorConfig, load_config
from logpipeline.models import Incident, IncidentEntry, IncidentState, SecurityEvent
from logpipeline.response import SEVERITY_ORDER, respond

TITLES = {
    "login_bruteforce": "Login brute force from {subject}",
    "login_bruteforce_split": "Login brute force split across instances from {subject}",
    "path_probing": "Sensitive path probing from {subject}",
    "sqli_probing": "SQL injection probing from {subject}",
    "xss_probing": "XSS probing from {subject}",
    "traversal_probing": "Path traversal probing from {subject}",
    "distributed_probing": "Distributed probing from network {subject}",
    "bad_user_agent": "Scanner user agent from {subject}",
    "waf_block_burst": "WAF block burst from {subject}",
    "error_rate_spike": "Error-rate spike on {subject}",
    "traffic_spike": "Traffic spike on {subject}",
}


def _lock_subject(subject: str) -> None:
    if connection.vendor == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"logpipeline.incident:{subject}".encode()).digest()[:8], "big",
                             signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC) if ts else timezone.now()


def record_detections(detections: list[Detection], config: Config | None = None) -> list[SecurityEvent]:
    """Store each detection as a SecurityEvent in its incident, then apply the detector's response policy."""
    config = config or load_config()
    by_name: dict[str, DetectorConfig] = {d.name: d for d in config.detectors}
    events = []
    for detection in detections:
        with transaction.atomic():
            _lock_subject(detection.subject)
            incident, created = _incident_for(detection)
            event = SecurityEvent.objects.create(
                timestamp=_when(detection.last_ts), event_type=detection.event_type, severity=detection.severity,
                gateway_instance=next(iter(detection.instances)) if len(detection.instances) == 1 else "*",
                client_ip=detection.subject if detection.subject_kind == "ip" else None,
                detector=detection.detector, subject=detection.subject,
                description=TITLES.get(detection.event_type, "{subject}").format(subject=detection.subject),
                details=_evidence(detection), incident=incident)
            IncidentEntry.objects.create(
                incident=incident, at=timezone.now(), kind="detection",
                text=f"{detection.event_type}: {detection.count} in {detection.window_seconds}s "
                     f"(threshold {detection.threshold}) on {', '.join(sorted(detection.instances)) or '-'}",
                data={"security_event": event.pk, "opened": created})
            det = by_name.get(detection.detector)
            if det is not None:
                respond(det, detection, incident, config)
        events.append(event)
    return events


def _incident_for(detection: Detection) -> tuple[Incident, bool]:
    merge_after = timezone.now() - timedelta(hours=settings.LOG_INCIDENT_MERGE_HOURS)
    incident = (Incident.objects.select_for_update()
                .filter(subject=detection.subject, last_event_at__gte=merge_after)
                .exclude(state=IncidentState.CLOSED).order_by("-opened_at").first())
    now = timezone.now()
    title = TITLES.get(detection.event_type, "{subject}").format(subject=detection.subject)
    if incident is None:
        incident = Incident.objects.create(
            title=title[:300], severity=detection.severity, detector=detection.detector, subject=detection.subject,
            source_ips=[detection.subject] if detection.subject_kind == "ip" else [],
            gateway_instances=sorted(detection.instances), summary=title, opened_at=now, last_event_at=now,
            evidence={"detections": [_evidence(detection)]})
        return incident, True
    if SEVERITY_ORDER.get(detection.severity, 1) > SEVERITY_ORDER.get(incident.severity, 1):
        incident.severity = detection.severity
    incident.gateway_instances = sorted(set(incident.gateway_instances) | set(detection.instances))
    detections = list((incident.evidence or {}).get("detections", []))[-19:]  # bounded: the timeline keeps all
    incident.evidence = {**(incident.evidence or {}), "detections": [*detections, _evidence(detection)]}
    if detection.event_type not in incident.summary:
        incident.summary = f"{incident.summary}; {title}"[:2000]
    incident.last_event_at = now
    incident.save(update_fields=["severity", "gateway_instances", "evidence", "summary", "last_event_at"])
    return incident, False


def _evidence(detection: Detection) -> dict[str, object]:
    return {
        "detector": detection.detector, "event_type": detection.event_type, "subject": detection.subject,
        "count": detection.count, "threshold": detection.threshold, "window_seconds": detection.window_seconds,
        "instances": detection.instances, "samples": detection.samples,
        "first_seen": _when(detection.first_ts).isoformat() if detection.first_ts else None,
        "last_seen": _when(detection.last_ts).isoformat() if detection.last_ts else None, **detection.extra,
    }


def change_state(incident: Incident, state: str, actor: str, note: str = "") -> bool:
    """Move an incident (acknowledge, mitigate, close), recorded in its timeline; False when already there."""
    if state not in IncidentState.values:
        raise ValueError(f"unknown incident state {state!r}")
    with transaction.atomic():
        updated = Incident.objects.filter(pk=incident.pk).exclude(state=state).update(
            state=state, closed_at=timezone.now() if state == IncidentState.CLOSED else None)
        if not updated:
            return False
        IncidentEntry.objects.create(incident=incident, at=timezone.now(), kind="state",
                                     text=f"{state} by {actor}" + (f": {note}" if note else "")[:400])
    incident.refresh_from_db()
    return True
