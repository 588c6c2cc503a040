"""Admin of the fleet, the resync action, credential revocation, issue_gateway_cert, the reconcile task."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from gateways import services
from gateways.models import GatewayCredential, GatewayGroup, GatewayInstance, InstanceResourceState, ResourceVersion
from gateways.resources import InvalidResource
from gateways.services import publish_desired_state, register_resource
from gateways.tasks import reconcile_push
from tests.push_support import placeholder_builders


@pytest.fixture
def builders() -> Iterator[dict[str, Any]]:
    with placeholder_builders():
        data: dict[str, Any] = {"waf_rules": {"name": "waf-rules.yaml", "content": "rules: []\n"}}
        register_resource("waf_rules", lambda g: data["waf_rules"])
        yield data


@pytest.fixture
def fleet(db: None, builders: dict[str, Any]) -> GatewayInstance:
    group, _ = GatewayGroup.objects.get_or_create(name="default")
    (v,) = publish_desired_state("waf_rules", group)
    inst = GatewayInstance.objects.create(instance_id="gw-1", group=group, connected=True, last_seen=timezone.now())
    InstanceResourceState.objects.create(instance=inst, resource_type="waf_rules", sent_version=v.pk,
                                         rejected_version=v.pk, rejected_error="reload command exited 1: boom")
    return inst


def test_publish_is_idempotent_and_rejects_bad_state(fleet: GatewayInstance, builders: dict[str, Any]) -> None:
    before = ResourceVersion.objects.count()
    publish_desired_state("waf_rules")
    assert ResourceVersion.objects.count() == before  # same checksum: no new version
    builders["waf_rules"] = {"name": "waf-rules.yaml", "content": 42, "secret_key": "x"}
    with pytest.raises(InvalidResource, match="invalid waf_rules state"):
        publish_desired_state("waf_rules")
    with pytest.raises(InvalidResource, match="unknown resource type"):
        publish_desired_state("teapots")
    assert ResourceVersion.objects.count() == before
    v = ResourceVersion.objects.first()
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("SELECT payload FROM gateways_resourceversion WHERE id = %s", [v.pk])
        stored = bytes(cur.fetchone()[0])
    assert b"rules: []" not in stored  # encrypted at rest


def test_admin_shows_fleet_and_resync_clears_parked(fleet: GatewayInstance, admin_client: Any) -> None:
    page = admin_client.get("/admin/gateways/gatewayinstance/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "gw-1" in body and "reload command exited 1: boom" in body
    detail = admin_client.get(f"/admin/gateways/gatewayinstance/{fleet.pk}/change/")
    assert detail.status_code == 200
    versions = admin_client.get("/admin/gateways/resourceversion/")
    assert versions.status_code == 200 and "rules: []" not in versions.content.decode()
    resp = admin_client.post("/admin/gateways/gatewayinstance/",
                             {"action": "resync", "_selected_action": [fleet.pk]}, follow=True)
    assert resp.status_code == 200
    st = InstanceResourceState.objects.get(instance=fleet)
    assert (st.rejected_version, st.sent_version, st.rejected_error) == (None, None, "")


def test_revoke_action(fleet: GatewayInstance, admin_client: Any) -> None:
    from audit.models import AuditEvent

    cred = GatewayCredential.objects.create(name="gw-1", group=fleet.group, serial="ab", fingerprint_sha256="f" * 64,
                                            not_after=timezone.now())
    admin_client.post("/admin/gateways/gatewaycredential/", {"action": "revoke", "_selected_action": [cred.pk],
                                                             "reason": "laptop stolen"})
    cred.refresh_from_db()
    assert cred.revoked_at is not None and cred.revoked_reason == "laptop stolen"
    event = AuditEvent.objects.get(action="gateway.credential_revoked")
    assert (event.actor_type, event.object_id) == ("person", str(cred.pk))


def test_move_action_changes_the_group_and_is_audited(fleet: GatewayInstance, admin_client: Any) -> None:
    from audit.models import AuditEvent

    canary = GatewayGroup.objects.create(name="canary")
    cred = GatewayCredential.objects.create(name="gw-1", group=fleet.group, serial="ab", fingerprint_sha256="f" * 64,
                                            not_after=timezone.now())
    admin_client.post("/admin/gateways/gatewaycredential/", {"action": "move", "_selected_action": [cred.pk],
                                                             "group": canary.pk})
    cred.refresh_from_db()
    fleet.refresh_from_db()
    assert cred.group == canary and fleet.group == canary
    assert AuditEvent.objects.get(action="gateway.credential_moved").after == {"group": "canary"}


def test_resync_is_audited(fleet: GatewayInstance, admin_client: Any) -> None:
    from audit.models import AuditEvent

    admin_client.post("/admin/gateways/gatewayinstance/", {"action": "resync", "_selected_action": [fleet.pk]})
    assert AuditEvent.objects.filter(action="gateway.resync", object_id=str(fleet.pk)).count() == 1


def test_issue_gateway_cert_creates_ca_and_client_cert(db: None, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    with override_settings(GRPC_CA_CERT=str(pki / "ca.crt"), GRPC_CA_KEY=str(pki / "ca.key"),
                           GRPC_TLS_CERT=str(pki / "server.crt"), GRPC_TLS_KEY=str(pki / "server.key")):
        GatewayGroup.objects.get_or_create(name="default")
        call_command("issue_gateway_cert", "edge-1", "--out", str(tmp_path / "out"))
        call_command("issue_gateway_cert", "worker", "--server", "--host", "grpc.internal")
    cert = x509.load_pem_x509_certificate((tmp_path / "out/edge-1.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "out/ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert (tmp_path / "out/edge-1.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki/ca.key").stat().st_mode & 0o777 == 0o600
    assert GatewayCredential.objects.get(name="edge-1").fingerprint_sha256 == cert.fingerprint(
        cert.signature_hash_algorithm).hex()
    server = x509.load_pem_x509_certificate((tmp_path / "pki/server.crt").read_bytes())
    assert "grpc.internal" in server.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    from django.core.management.base import CommandError
    with pytest.raises(CommandError, match="invalid NAME"):
        call_command("issue_gateway_cert", "../evil", "--out", str(tmp_path / "out"))


def test_reconcile_task_releases_dead_replicas(fleet: GatewayInstance) -> None:
    GatewayInstance.objects.filter(pk=fleet.pk).update(last_seen=timezone.now() - timezone.timedelta(hours=1))
    result = reconcile_push.apply().get()
    assert result["marked_disconnected"] == 1 and result["announced"] >= 1
    assert not GatewayInstance.objects.get(pk=fleet.pk).connected
    assert services.mark_stale_disconnected(60) == 0  # idempotent


def test_schedules_declared() -> None:
    from gateways.schedules import SCHEDULES
    assert [j.task for j in SCHEDULES] == ["gateways.reconcile_push"]


def test_issue_gateway_cert_refuses_bad_days_and_unknown_groups(db: None, tmp_path: Path) -> None:
    from django.core.management.base import CommandError

    pki = tmp_path / "pki"
    GatewayGroup.objects.get_or_create(name="default")
    with override_settings(GRPC_CA_CERT=str(pki / "ca.crt"), GRPC_CA_KEY=str(pki / "ca.key")):
        for days in ("-2", "0", "99999"):
            with pytest.raises(CommandError, match="--days must be between 1 and 3650"):
                call_command("issue_gateway_cert", "edge-1", "--days", days, "--out", str(tmp_path / "out"))
        with pytest.raises(CommandError, match="no Gateway group 'nowhere'"):
            call_command("issue_gateway_cert", "edge-1", "--group", "nowhere", "--out", str(tmp_path / "out"))
        assert not GatewayCredential.objects.exists() and not (tmp_path / "out").exists()
        GatewayGroup.objects.create(name="canary")
        call_command("issue_gateway_cert", "edge-2", "--group", "canary", "--out", str(tmp_path / "out"))
    cred = GatewayCredential.objects.get()
    assert (cred.name, cred.group.name) == ("edge-2", "canary")
