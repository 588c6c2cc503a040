"""Certificate requests without a CA: the group's policy, the four-eyes rule through the service, admin, the
command and the API, auto-approval, on-demand requests from Gateways, and risky changes waiting for a second
person. Pre-flight asks the real BIND (tests/peers/bind.py); nothing here reaches a CA."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from audit import approvals
from audit.models import ApprovalRequest, AuditEvent
from certificates import preflight
from certificates.models import (
    Certificate,
    CertificateChange,
    CertificateRequest,
    DnsUpdateServer,
    RequestState,
)
from certificates.services import changes
from certificates.services import requests as svc
from gateways.models import GatewayGroup
from integrations.models import Notification, NotificationChannel
from tests.cert_request_support import (
    CA_ID,
    PASSWORD,
    dns_update,
    group_with_policy,
    name_with_caa,
    offline_account,
    people,
    trusted_role,
)
from tests.certificates_support import unique

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(bind_server):  # type: ignore[no-untyped-def]
    issuer = offline_account(bind_server)
    policy = group_with_policy(issuer, bind_server.zone)
    return issuer, policy, people()


def _file(world, *names: str, **kw):  # type: ignore[no-untyped-def]
    issuer, policy, who = world
    by = kw.pop("by", who.alice)
    return svc.file_request(domains=list(names), group=policy.group, issuer=issuer, requested_by=by,
                            justification=kw.pop("justification", "shop launch"), **kw)


def _name(bind_server, prefix: str = "req") -> str:  # type: ignore[no-untyped-def]
    return f"{unique(prefix)}.{bind_server.zone}"


def test_outside_policy_is_refused_naming_the_rule(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    issuer, policy, who = world
    with pytest.raises(svc.RequestRefused, match=r"not under a suffix.*rule: allowed_suffixes"):
        _file(world, "shop.other.test")
    with pytest.raises(svc.RequestRefused, match=r"rule: allowed_suffixes"):  # a label boundary, not a string end
        _file(world, f"www.not{bind_server.zone}")
    with pytest.raises(svc.RequestRefused, match=r"wildcard.*rule: allow_wildcards"):
        _file(world, f"*.{_name(bind_server)}", challenge_type="dns-01", dns_server=DnsUpdateServer.objects.create(
            name=unique("bind"), server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
            tsig_key_name=bind_server.tsig_key_name, tsig_secret=bind_server.tsig_secret))
    policy.max_names = 1
    policy.save()
    with pytest.raises(svc.RequestRefused, match=r"at most 1.*rule: max_names"):
        _file(world, _name(bind_server), _name(bind_server))
    other = offline_account(bind_server)
    with pytest.raises(svc.RequestRefused, match=r"issuer .* not allowed.*rule: issuers"):
        svc.file_request(domains=[_name(bind_server)], group=policy.group, issuer=other, requested_by=who.alice,
                         justification="x")
    assert not CertificateRequest.objects.filter(group=policy.group).exists()


def test_requester_cannot_approve_through_service_admin_command_and_api(world, bind_server, client) -> None:  # type: ignore[no-untyped-def]
    _, _, who = world
    who.alice.user_permissions.add(*who.bob.user_permissions.all())  # even with the approver's permission
    request = _file(world, _name(bind_server))
    assert request.state == RequestState.PENDING, request.error
    approval = svc.approval_for(request)
    assert approval is not None and approval.requested_by_id == who.alice.pk
    alice = type(who.alice).objects.get(pk=who.alice.pk)

    with pytest.raises(approvals.ApprovalError, match="cannot approve"):  # service
        svc.approve_request(request, alice, "mine")
    with pytest.raises(CommandError, match="cannot approve"):  # command
        call_command("decide_approval", str(approval.pk), "--user", alice.username, "--approve", stdout=io.StringIO())
    client.login(username=alice.username, password=PASSWORD)  # admin, on the request's own page
    page = client.post(f"/admin/certificates/certificaterequest/{request.pk}/change/",
                       {"_approve": "1", "decision_comment": "mine"}, follow=True)
    assert "cannot approve" in page.content.decode()
    api = APIClient()
    api.force_authenticate(alice)
    answer = api.post(f"/api/approvals/{approval.pk}/approve/", {"comment": "mine"}, format="json")
    assert answer.status_code == 403 and "cannot approve" in answer.json()["detail"]
    request.refresh_from_db()
    assert request.state == RequestState.PENDING and request.certificate is None

    with pytest.raises(approvals.ApprovalError, match="lacks the permission"):
        svc.approve_request(request, who.carol, "not mine")


def test_second_person_approves_and_requester_is_notified(world, bind_server,  # type: ignore[no-untyped-def]
                                                          django_capture_on_commit_callbacks) -> None:
    _, _, who = world
    NotificationChannel.objects.create(name=unique("ops"), kind="webhook", target="http://127.0.0.1:9/",
                                       min_severity="info")  # requester notices are informational
    request = _file(world, _name(bind_server))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        svc.approve_request(request, who.bob, "ok for the launch")
    assert request.state == RequestState.APPROVED
    # issuance enqueued once the decision commits (the notification's delivery is the other callback)
    assert [c.__qualname__.split(".")[0] for c in callbacks].count("_enqueue_issuance") == 1
    assert Notification.objects.filter(event_kind="certificate_request.approved",
                                       dedupe_key=f"certificate-request:{request.pk}:approved").exists()
    actions = set(AuditEvent.objects.filter(object_id=str(request.pk)).values_list("action", flat=True))
    assert "certificate_request.filed" in actions
    assert AuditEvent.objects.filter(action="approval.approved").exists()


def test_reject_needs_a_comment_and_closes_the_request(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    _, _, who = world
    request = _file(world, _name(bind_server))
    with pytest.raises(approvals.ApprovalError, match="comment"):
        svc.reject_request(request, who.bob, " ")
    svc.reject_request(request, who.bob, "not ours")
    assert request.state == RequestState.REJECTED


def test_command_files_a_request(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    issuer, policy, who = world
    out = io.StringIO()
    call_command("request_certificate", _name(bind_server), "--group", policy.group.name, "--issuer", issuer.name,
                 "--user", who.alice.username, "--justification", "new shop", stdout=out)
    assert "pending" in out.getvalue() and "decide_approval" in out.getvalue()
    with pytest.raises(CommandError, match="rule: allowed_suffixes"):
        call_command("request_certificate", "www.elsewhere.test", "--group", policy.group.name, "--issuer",
                     issuer.name, "--user", who.alice.username, "--justification", "x", stdout=io.StringIO())


def test_auto_approval_for_trusted_role_under_own_suffix(world, bind_server,  # type: ignore[no-untyped-def]
                                                         django_capture_on_commit_callbacks) -> None:
    _, policy, who = world
    own = f"{unique('team')}.{bind_server.zone}"
    policy.trusted_role = trusted_role(who.alice)
    policy.auto_approve_suffixes = [own]
    policy.save()
    with django_capture_on_commit_callbacks(execute=False):
        auto = _file(world, f"www.{own}")
    assert auto.state == RequestState.APPROVED and auto.auto_approved
    assert svc.approval_for(auto) is None
    outside_own = _file(world, _name(bind_server))  # inside policy, not under the own suffix: waits
    assert outside_own.state == RequestState.PENDING
    untrusted = _file(world, f"api.{own}", by=who.carol)  # not in the role: waits
    assert untrusted.state == RequestState.PENDING


def test_preflight_caa_forbidding_the_ca_refuses_and_allows_when_named(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    forbidden = name_with_caa(bind_server, '0 issue "other-ca.example"')
    request = _file(world, forbidden)
    assert request.state == RequestState.REFUSED
    assert "forbids the configured CA" in request.error and "other-ca.example" in request.error
    assert svc.approval_for(request) is None
    allowed = name_with_caa(bind_server, '0 issue "other-ca.example"', f'0 issue "{CA_ID}; account=1"')
    assert _file(world, allowed).state == RequestState.PENDING


def test_caa_tree_climb_issuewild_and_critical(bind_server) -> None:  # type: ignore[no-untyped-def]
    parent = name_with_caa(bind_server, '0 issue "other-ca.example"', f'0 issuewild "{CA_ID}"')
    deep = f"a.b.{parent}"
    check = preflight.check_caa(deep, CA_ID, bind_server.address)
    assert not check.ok and f"records at {parent}" in check.detail  # found by climbing from a.b.
    assert preflight.check_caa(f"*.{parent}", CA_ID, bind_server.address).ok  # issuewild decides wildcards
    critical = name_with_caa(bind_server, f'0 issue "{CA_ID}"', '128 tbs "x"')
    assert "unknown critical" in preflight.check_caa(critical, CA_ID, bind_server.address).detail
    assert preflight.check_caa(_name(bind_server), CA_ID, bind_server.address).ok  # no CAA anywhere
    nowhere = name_with_caa(bind_server, f'0 issue "{CA_ID}"')
    dns_update(bind_server, nowhere, "A")  # the name exists (CAA only): no wildcard A either
    assert not preflight.check_resolves(nowhere, bind_server.address).ok


def test_gateway_request_once_however_often_and_rate_limited(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    _, policy, _ = world
    name = _name(bind_server, "ondemand")
    assert {svc.request_from_gateway(policy.group_id, name) for _ in range(5)} == {"pending"}
    assert CertificateRequest.objects.filter(group=policy.group, dedupe_key=name).count() == 1
    request = CertificateRequest.objects.get(group=policy.group, dedupe_key=name)
    assert request.source == "gateway" and svc.approval_for(request) is not None

    before = CertificateRequest.objects.count()
    counted = svc.ondemand_counts(policy.group_id).get("outside-policy", 0)
    assert svc.request_from_gateway(policy.group_id, "www.elsewhere.test") == "outside-policy"
    assert CertificateRequest.objects.count() == before
    assert svc.ondemand_counts(policy.group_id)["outside-policy"] == counted + 1

    policy.gateway_requests_per_hour = 2
    policy.save()
    outcomes = [svc.request_from_gateway(policy.group_id, _name(bind_server, "burst")) for _ in range(4)]
    assert outcomes.count("rate-limited") >= 2 and CertificateRequest.objects.count() <= before + 2


def test_move_and_key_export_wait_for_a_second_person(world, bind_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    issuer, policy, who = world
    target = group_with_policy(issuer, bind_server.zone).group
    cert = Certificate.objects.create(name=unique("mv"), common_name=_name(bind_server), domains=[],
                                      gateway_group=policy.group)
    cert.domains = [cert.common_name]
    cert.save()
    cert.issuers.add(issuer)
    move = changes.request_move(cert, target, who.alice, justification="team moved")
    cert.refresh_from_db()
    assert cert.gateway_group_id == policy.group_id  # nothing yet
    approval = approvals.pending_for(move, "certificates.move")
    with pytest.raises(approvals.ApprovalError, match="cannot approve"):
        approvals.approve(approval, who.alice, "")
    approvals.approve(approval, who.bob, "fine")
    cert.refresh_from_db()
    assert cert.gateway_group_id == target.pk

    nowhere = GatewayGroup.objects.create(name=unique("bare"))
    with pytest.raises(changes.ChangeRefused, match="no certificate policy"):
        changes.request_move(cert, nowhere, who.alice, justification="x")

    export = changes.request_key_export(who.alice, justification="disaster recovery drill")
    with pytest.raises(changes.ChangeRefused, match="not an approved key export"):
        changes.export_with_keys(export, who.alice, tmp_path / "b.bin", "a long enough passphrase 123")
    approvals.approve(approvals.pending_for(export, "certificates.export_keys"), who.bob, "drill ok")
    export.refresh_from_db()
    with pytest.raises(changes.ChangeRefused, match="approved for"):
        changes.export_with_keys(export, who.bob, tmp_path / "b.bin", "a long enough passphrase 123")
    changes.export_with_keys(export, who.alice, tmp_path / "b.bin", "a long enough passphrase 123")
    assert (tmp_path / "b.bin").exists()
    with pytest.raises(changes.ChangeRefused, match=r"not an approved key export \(export_keys, issued\)"):
        changes.export_with_keys(CertificateChange.objects.get(pk=export.pk), who.alice, tmp_path / "c.bin",
                                 "a long enough passphrase 123")


def test_admin_queue_shows_who_why_policy_and_preflight(world, bind_server, client) -> None:  # type: ignore[no-untyped-def]
    _, _, who = world
    request = _file(world, _name(bind_server), justification="black friday shop")
    client.login(username=who.bob.username, password=PASSWORD)
    queue = client.get("/admin/certificates/certificaterequest/?state__exact=pending").content.decode()
    assert who.alice.username in queue and "black friday shop" in queue and "pass" in queue
    page = client.get(f"/admin/certificates/certificaterequest/{request.pk}/change/").content.decode()
    assert "allowed_suffixes" in page and "A or AAAA" not in page and "no CAA record" in page
    assert 'name="_approve"' in page
    assert ApprovalRequest.objects.filter(subject_id=str(request.pk), action=svc.ISSUE_ACTION).exists()


def test_change_command_files_a_move_and_refuses_an_emergency_without_a_reason(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    issuer, policy, who = world
    target = group_with_policy(issuer, bind_server.zone).group
    cert = Certificate.objects.create(name=unique("cmd"), common_name=_name(bind_server), domains=[],
                                      gateway_group=policy.group)
    cert.domains = [cert.common_name]
    cert.save()
    cert.issuers.add(issuer)
    out = io.StringIO()
    call_command("certificate_change", "move", cert.name, "--user", who.alice.username, "--group", target.name,
                 "--justification", "team moved", stdout=out)
    assert "waits for a second person" in out.getvalue()
    cert.refresh_from_db()
    assert cert.gateway_group_id == policy.group_id
    with pytest.raises(CommandError, match="serves no version"):
        call_command("certificate_change", "emergency-revoke", cert.name, "--user", who.alice.username,
                     "--justification", "x", stdout=io.StringIO())


def test_a_person_files_through_the_api_and_cannot_approve_it_there(world, bind_server) -> None:  # type: ignore[no-untyped-def]
    issuer, policy, who = world
    alice = type(who.alice).objects.get(pk=who.alice.pk)
    api = APIClient()
    api.force_authenticate(alice)
    name = _name(bind_server, "api")
    body = {"domains": [name], "group": policy.group.name, "issuer": issuer.name, "justification": "api launch"}
    answer = api.post("/api/certificates/requests/", body, format="json")
    assert answer.status_code == 201, answer.content
    filed = answer.json()
    assert (filed["state"], filed["requested_by_name"], filed["domains"]) == ("pending", alice.username, [name])
    refused = api.post("/api/certificates/requests/", {**body, "domains": ["www.elsewhere.test"]}, format="json")
    assert refused.status_code == 400 and refused.json()["rule"] == "allowed_suffixes", refused.content
    approve = api.post(f"/api/approvals/{filed['approval']}/approve/", {"comment": "mine"}, format="json")
    assert approve.status_code == 403 and "cannot approve" in approve.json()["detail"]
    assert CertificateRequest.objects.get(pk=filed["id"]).state == RequestState.PENDING
