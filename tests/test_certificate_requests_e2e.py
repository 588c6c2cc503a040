"""Certificate requests on real components: pre-flight CAA in the real BIND refuses before Pebble hears of the
order (every connection to Pebble's ACME port passes the fixture's TCP gate, which counts them), a CAA record
naming the configured CA lets the request through, and the approved request is issued on Pebble, pushed to the
gateway-agent and served by nginx. Revocation waits for a second person; an emergency one does not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import approvals
from certificates.acme_client import AcmeClient, AcmeError
from certificates.models import AcmeOrder, CertificateRequest, RequestState
from certificates.services import changes
from certificates.services import requests as svc
from integrations.models import Notification, NotificationChannel
from tests.cert_request_support import CA_ID, account_for, dns_update, group_with_policy, name_with_caa, people
from tests.certificates_fleet import Fleet, running_fleet
from tests.certificates_support import unique
from worker_project.celery import app as celery_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def fleet(pebble, nginx_factory, tmp_path: Path) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    with running_fleet(nginx_factory, tmp_path, http_port=pebble.http_port) as running:
        yield running


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run in this process when enqueued (the real task code, no worker needed)."""
    saved = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = saved


def _file(issuer, group, name: str, user):  # type: ignore[no-untyped-def]
    return svc.file_request(domains=[name], group=group, issuer=issuer, requested_by=user,
                            justification="new storefront")


def test_caa_naming_another_ca_refuses_before_pebble_is_contacted(pebble, bind_server) -> None:  # type: ignore[no-untyped-def]
    issuer = account_for(pebble, bind_server)
    policy = group_with_policy(issuer, bind_server.zone)
    who = people()
    before = pebble.gate.accepted

    forbidden = _file(issuer, policy.group, name_with_caa(bind_server, '0 issue "letsencrypt.org"'), who.alice)

    assert forbidden.state == RequestState.REFUSED
    assert "allows only letsencrypt.org: it forbids the configured CA" in forbidden.error
    assert svc.approval_for(forbidden) is None

    # approved while CAA allowed it, forbidden before issuance: still no order
    name = name_with_caa(bind_server, f'0 issue "{CA_ID}"')
    request = _file(issuer, policy.group, name, who.alice)
    assert request.state == RequestState.PENDING, request.error
    svc.approve_request(request, who.bob, "ok")  # on_commit enqueue is not run here: issue by hand below
    dns_update(bind_server, name, "CAA", '0 issue "letsencrypt.org"')
    svc.issue_request(request.pk)
    request.refresh_from_db()
    assert request.state == RequestState.FAILED and "forbids the configured CA" in request.error

    assert pebble.gate.accepted == before, "a connection reached Pebble's ACME port"
    assert not AcmeOrder.objects.filter(certificate__requests__group=policy.group).exists()


def test_approved_request_is_issued_on_pebble_pushed_and_served(  # type: ignore[no-untyped-def]
        pebble, bind_server, fleet: Fleet, eager_tasks) -> None:
    issuer = account_for(pebble, bind_server)
    policy = group_with_policy(issuer, bind_server.zone, name="default")
    who = people()
    NotificationChannel.objects.get_or_create(name="ops-e2e", defaults={"kind": "webhook",
                                                                         "target": "http://127.0.0.1:9/",
                                                                         "min_severity": "info"})
    name = name_with_caa(bind_server, f'0 issue "{CA_ID}"')
    before = pebble.gate.accepted
    request = _file(issuer, policy.group, name, who.alice)
    assert request.state == RequestState.PENDING, request.error
    assert pebble.gate.accepted == before  # filing and pre-flight talk to DNS only

    svc.approve_request(request, who.bob, "go")  # commits; the issuance task runs (eagerly) after

    request = CertificateRequest.objects.select_related("certificate__current_version").get(pk=request.pk)
    assert request.state == RequestState.ISSUED, request.error
    assert pebble.gate.accepted > before
    version = request.certificate.current_version
    assert request.certificate.gateway_group_id == policy.group_id and version.domains == [name]
    fleet.wait_served(name, version.serial_hex)
    assert Notification.objects.filter(dedupe_key=f"certificate-request:{request.pk}:issued").exists()


def test_revocation_waits_for_a_second_person_and_emergency_is_immediate(  # type: ignore[no-untyped-def]
        pebble, bind_server, fleet: Fleet, eager_tasks) -> None:
    issuer = account_for(pebble, bind_server)
    policy = group_with_policy(issuer, bind_server.zone, name="default")
    who = people()
    issued = []
    for _ in range(2):
        request = _file(issuer, policy.group, f"{unique('rv')}.{bind_server.zone}", who.alice)
        svc.approve_request(request, who.bob, "go")
        request.refresh_from_db()
        assert request.state == RequestState.ISSUED, request.error
        issued.append(request.certificate.current_version)

    change = changes.request_revocation(issued[0], who.alice, reason="superseded", justification="moving CA")
    issued[0].refresh_from_db()
    assert issued[0].revoked_at is None  # waits
    approval = approvals.pending_for(change, "certificates.revoke")
    with pytest.raises(approvals.ApprovalError, match="cannot approve"):
        approvals.approve(approval, who.alice, "")
    approvals.approve(approval, who.bob, "agreed")
    issued[0].refresh_from_db()
    assert issued[0].revoked_at is not None
    with pytest.raises(AcmeError, match="alreadyRevoked|already revoked"):  # the CA really recorded it
        AcmeClient.connect(issuer).revoke(issued[0].cert_pem, 4)

    NotificationChannel.objects.create(name=unique("pager"), kind="webhook", target="http://127.0.0.1:9/",
                                       min_severity="info")  # requester notices are informational
    with pytest.raises(changes.ChangeRefused, match="written reason"):
        changes.emergency_revoke(issued[1], who.alice, reason="keyCompromise", written_reason="oops")
    changes.emergency_revoke(issued[1], who.alice, reason="keyCompromise",
                             written_reason="key leaked in a public repository, commit abc123")
    issued[1].refresh_from_db()
    assert issued[1].revoked_at is not None and issued[1].revocation_reason == "keyCompromise"
    from audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="certificate.emergency_revocation").exists()
    assert Notification.objects.filter(dedupe_key=f"emergency-revocation:{issued[1].pk}").exists()


def test_on_demand_request_reaches_the_connected_gateway_after_approval(  # type: ignore[no-untyped-def]
        pebble, bind_server, fleet: Fleet, eager_tasks) -> None:
    """What the draft GetCertificate will call (through gateways.services.register_certificate_requester, not in
    this tree yet): called here directly, as the Gateway's group would be."""
    issuer = account_for(pebble, bind_server)
    policy = group_with_policy(issuer, bind_server.zone, name="default")
    name = name_with_caa(bind_server, f'0 issue "{CA_ID}"')
    assert [svc.request_from_gateway(policy.group_id, name) for _ in range(3)] == ["pending"] * 3
    request = CertificateRequest.objects.get(group=policy.group, dedupe_key=name)
    assert request.source == "gateway" and request.requested_by is None

    svc.approve_request(request, people().bob, "on-demand ok")

    request.refresh_from_db()
    assert request.state == RequestState.ISSUED, request.error
    fleet.wait_served(name, request.certificate.current_version.serial_hex)
    assert fleet.agent.log.read_text().count("connected to Worker replica") == 1, "the agent reconnected"
    assert svc.request_from_gateway(policy.group_id, name) == "issued"
