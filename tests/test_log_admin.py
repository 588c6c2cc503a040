"""Admin of the log pipeline: an incident shows its timeline and evidence and moves through its states, detectors
and the allow list are edited (bad values refused), intake sources show rates and malformed samples."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from logpipeline.detectors import load_config
from logpipeline.models import AllowListEntry, Detector, Incident, IntakeSource
from logpipeline.services import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("root", "root@example.invalid", "pw"))
    return client


def brute_force(ip: str) -> list[str]:
    start = time.time() - 300
    return [f'{ip} - - [{time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(start + i))}] "POST /login HTTP/1.1" '
            f'401 10 "-" "Mozilla/5.0 (X11)"' for i in range(12)]


def test_incident_page_shows_timeline_and_evidence_and_actions_move_it(staff, detectors, make_engine) -> None:
    ingest("http", "gw-1", brute_force("203.0.113.77"), engine=make_engine())
    incident = Incident.objects.get(subject="203.0.113.77")
    page = staff.get(reverse("admin:logpipeline_incident_change", args=[incident.pk])).content.decode()
    assert "Login brute force from 203.0.113.77" in page
    assert "in 300s (threshold 10) on gw-1" in page  # the timeline's detection
    assert "would have requested block ip=203.0.113.77" in page  # the simulated response
    assert "POST /login 401" in page  # a sample line in the evidence

    changelist = reverse("admin:logpipeline_incident_changelist")
    staff.post(changelist, {"action": "acknowledge", "_selected_action": [incident.pk]})
    incident.refresh_from_db()
    assert incident.state == "acknowledged"
    staff.post(changelist, {"action": "close", "_selected_action": [incident.pk]})
    incident.refresh_from_db()
    assert incident.state == "closed" and incident.timeline.filter(kind="state").count() == 2
    assert staff.get(reverse("admin:logpipeline_incident_add")).status_code == 403


def test_detectors_and_allow_list_are_edited_in_admin(staff, detectors) -> None:
    detector = Detector.objects.get(name="path-probing")
    url = reverse("admin:logpipeline_detector_change", args=[detector.pk])
    data = {"name": "path-probing", "kind": "path_probing", "enabled": "on", "threshold": "9", "window_seconds": "60",
            "severity": "high", "params": "{}", "response": "block", "block_ttl_seconds": "600",
            "max_block_ttl_seconds": "3600", "description": "x"}
    assert staff.post(url, data).status_code == 302
    assert [d.threshold for d in load_config().detectors if d.name == "path-probing"] == [9]  # picked up at once
    bad = staff.post(url, {**data, "params": '{"paths": "(unclosed"}'})
    assert bad.status_code == 200 and "not a valid pattern" in bad.content.decode()

    add = reverse("admin:logpipeline_allowlistentry_add")
    assert staff.post(add, {"cidr": "10.1.2.3/8", "note": "vpn"}).status_code == 302
    assert AllowListEntry.objects.get().cidr == "10.0.0.0/8"
    refused = staff.post(add, {"cidr": "not-an-ip", "note": ""})
    assert refused.status_code == 200 and "is not an IP address or network" in refused.content.decode()
    assert load_config().allowed("10.9.9.9")


def test_intake_sources_show_rates_and_malformed_samples(staff, detectors, make_engine) -> None:
    ingest("http", "gw-9", ["garbage line one", b"\xff\xfe binary", *brute_force("198.51.100.77")[:2]],
           engine=make_engine())
    source = IntakeSource.objects.get(instance_id="gw-9")
    listing = staff.get(reverse("admin:logpipeline_intakesource_changelist")).content.decode()
    assert "gw-9" in listing and "50.00" in listing  # 2 of 4 malformed
    page = staff.get(reverse("admin:logpipeline_intakesource_change", args=[source.pk])).content.decode()
    assert "invalid UTF-8" in page and "garbage line one" in page and "not nginx combined" in page
