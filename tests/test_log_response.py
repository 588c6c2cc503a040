"""Automatic response: policy per detector, simulation, the allow list that always wins, TTL growth, the responder
seam, notifications and the incident's timeline."""

from __future__ import annotations

import time

import pytest

from integrations.models import Notification, NotificationChannel
from logpipeline.detectors import invalidate_config, load_config
from logpipeline.incidents import change_state
from logpipeline.models import AllowListEntry, Detector, Incident, IncidentState, ResponseAction
from logpipeline.response import ResponseRequest, register_responder
from logpipeline.services import ingest

pytestmark = pytest.mark.django_db


def brute_force(ip: str, n: int = 12, start: float | None = None) -> list[str]:
    start = start or time.time() - 600
    lines = []
    for i in range(n):
        when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i))
        lines.append(f'{ip} - - [{when}] "POST /login HTTP/1.1" 401 10 "-" "Mozilla/5.0 (X11)"')
    return lines


@pytest.fixture
def responder():
    calls: list[ResponseRequest] = []

    def create_rule(request: ResponseRequest) -> dict:
        calls.append(request)
        return {"rule": len(calls)}

    register_responder(create_rule)
    yield calls
    register_responder(None)


def arm(name: str = "login-bruteforce", **changes: object) -> None:
    Detector.objects.filter(name=name).update(**{"simulate": False, **changes})
    invalidate_config()


def test_blocking_policy_calls_the_responder_and_ttl_grows_for_repeat_offenders(detectors, make_engine,
                                                                                  responder) -> None:
    arm(response="block")
    NotificationChannel.objects.create(name="ops", kind="webhook", target="http://127.0.0.1:9/hook")
    engine = make_engine()
    ingest("http", "gw-1", brute_force("203.0.113.50"), engine=engine)
    assert [(r.match_field, r.pattern, r.action, r.ttl_seconds) for r in responder] == [
        ("ip", "203.0.113.50", "block", 900)]
    incident = Incident.objects.get(subject="203.0.113.50")
    assert incident.state == IncidentState.OPEN and responder[0].incident_id == incident.pk
    assert Notification.objects.filter(event_kind="security.incident", dedupe_key__startswith=f"incident:"
                                       f"{incident.pk}:").count() == 1
    # the same address again, a window later: same incident, the rule's TTL doubles
    ingest("http", "gw-2", brute_force("203.0.113.50", start=time.time() - 200), engine=engine)
    assert [r.ttl_seconds for r in responder] == [900, 1800]
    assert Incident.objects.filter(subject="203.0.113.50").count() == 1
    kinds = list(incident.timeline.values_list("kind", flat=True))
    assert kinds == ["detection", "response", "detection", "response"]
    assert ResponseAction.objects.filter(outcome="requested").count() == 2

    assert change_state(incident, IncidentState.ACKNOWLEDGED, actor="alice")
    assert not change_state(incident, IncidentState.ACKNOWLEDGED, actor="alice")
    assert change_state(incident, IncidentState.CLOSED, actor="alice") and incident.closed_at is not None
    assert incident.timeline.filter(kind="state").count() == 2


def test_simulation_records_what_would_have_been_blocked(detectors, make_engine, responder) -> None:
    Detector.objects.filter(name="login-bruteforce").update(simulate=True, response="block")
    invalidate_config()
    result = ingest("http", "gw-1", brute_force("203.0.113.51"), engine=make_engine())
    assert [d.subject for d in result.detections] == ["203.0.113.51"]
    assert responder == []
    action = ResponseAction.objects.get(pattern="203.0.113.51")
    assert action.outcome == "simulated" and action.result["request"]["action"] == "block"


def test_count_only_policy_asks_for_a_log_rule(detectors, make_engine, responder) -> None:
    arm(response="count")
    ingest("http", "gw-1", brute_force("203.0.113.52"), engine=make_engine())
    assert [(r.pattern, r.action) for r in responder] == [("203.0.113.52", "log")]


def test_allow_list_always_wins(detectors, make_engine, responder) -> None:
    arm(response="block")
    AllowListEntry.objects.create(cidr="203.0.113.0/28", note="office")
    invalidate_config()
    result = ingest("http", "gw-1", brute_force("203.0.113.5", n=50), engine=make_engine())
    assert result.detections == [] and responder == []  # never counted

    # a network detection that touches an allow-listed address is refused at the seam, whatever the detector says
    from logpipeline.correlation import Detection
    from logpipeline.incidents import record_detections

    arm("distributed-probing", response="block")
    detection = Detection(detector="distributed-probing", kind="distributed_probing",
                          event_type="distributed_probing", subject="203.0.113.0/24", subject_kind="network",
                          count=30, threshold=6, window_seconds=300, severity="high", first_ts=time.time(),
                          last_ts=time.time(), instances={"gw-1": 30})
    record_detections([detection], load_config(fresh=True))
    assert responder == []
    assert ResponseAction.objects.get(pattern="203.0.113.0/24").outcome == "allow_listed"


def test_without_a_registered_responder_the_request_is_recorded(detectors, make_engine) -> None:
    arm(response="block")
    register_responder(None)
    ingest("http", "gw-1", brute_force("203.0.113.53"), engine=make_engine())
    assert ResponseAction.objects.get(pattern="203.0.113.53").outcome == "no_responder"


def test_a_failing_responder_keeps_the_detection(detectors, make_engine) -> None:
    arm(response="block")

    def broken(request: ResponseRequest) -> dict:
        raise RuntimeError("waf_config is down")

    register_responder(broken)
    try:
        ingest("http", "gw-1", brute_force("203.0.113.54"), engine=make_engine())
    finally:
        register_responder(None)
    action = ResponseAction.objects.get(pattern="203.0.113.54")
    assert action.outcome == "failed" and "waf_config is down" in action.result["error"]
    assert Incident.objects.filter(subject="203.0.113.54").exists()
