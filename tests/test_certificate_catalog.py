"""People's changes to accounts, DNS servers and certificates are audited by the service that makes them, so the
admin and the management commands record the same thing (what changed, secrets named but never stored)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from certificates.models import AcmeAccount, Certificate, DnsUpdateServer
from gateways.models import GatewayGroup
from tests.certificates_support import install_expiring_version, served_serials

pytestmark = pytest.mark.django_db

ACCOUNT_FORM = {"name": "le", "directory_url": "https://acme.example.test/dir", "contact_email": "ops@example.test",
                "eab_kid": "", "new_eab_hmac_key": "", "tls_ca_bundle": "", "trust_roots_pem": "", "profile": ""}
DNS_FORM = {"name": "bind", "server": "127.0.0.1", "port": "53", "zone": "example.test", "tsig_key_name": "k",
            "tsig_algorithm": "hmac-sha256", "new_tsig_secret": "c2VjcmV0c2VjcmV0", "propagation_timeout_seconds": "60"}
CERT_INLINES = {"certificateissuer_set-TOTAL_FORMS": "0", "certificateissuer_set-INITIAL_FORMS": "0",
                "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
                "orders-TOTAL_FORMS": "0", "orders-INITIAL_FORMS": "0"}


@pytest.fixture
def alice() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("alice", "alice@example.test", "pw"))
    return client


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def _no_secret_in_trail(*secrets: str) -> None:
    trail = json.dumps([[e.before, e.after, e.summary] for e in AuditEvent.objects.all()])
    for secret in secrets:
        assert secret not in trail


def test_acme_account_edits_in_admin_are_audited(alice: Client) -> None:
    response = alice.post(reverse("admin:certificates_acmeaccount_add"), ACCOUNT_FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    account = AcmeAccount.objects.get(name="le")
    (created,) = _events("acme_account.created")
    assert created.actor == "alice" and created.actor_type == "person" and created.object_id == str(account.pk)
    assert created.after["directory_url"] == ACCOUNT_FORM["directory_url"] and created.after["secrets_set"] == [
        "key_pem"]

    alice.post(reverse("admin:certificates_acmeaccount_change", args=[account.pk]),
               {**ACCOUNT_FORM, "directory_url": "https://acme2.example.test/dir", "new_eab_hmac_key": "aG1hYy1rZXk"})
    (updated,) = _events("acme_account.updated")
    assert updated.before == {"directory_url": "https://acme.example.test/dir"}
    assert updated.after == {"directory_url": "https://acme2.example.test/dir", "secrets_changed": ["eab_hmac_key"]}
    alice.post(reverse("admin:certificates_acmeaccount_change", args=[account.pk]),
               {**ACCOUNT_FORM, "directory_url": "https://acme2.example.test/dir"})
    assert len(_events("acme_account.updated")) == 1, "a save that changes nothing records nothing"

    alice.post(reverse("admin:certificates_acmeaccount_delete", args=[account.pk]), {"post": "yes"})
    assert not AcmeAccount.objects.exists()
    (deleted,) = _events("acme_account.deleted")
    assert deleted.actor == "alice" and deleted.before["name"] == "le"
    _no_secret_in_trail("aG1hYy1rZXk", account.key_pem)


def test_dns_server_edits_in_admin_are_audited(alice: Client) -> None:
    assert alice.post(reverse("admin:certificates_dnsupdateserver_add"), DNS_FORM).status_code == 302
    server = DnsUpdateServer.objects.get(name="bind")
    assert _events("dns_server.created")[0].actor == "alice"
    alice.post(reverse("admin:certificates_dnsupdateserver_change", args=[server.pk]),
               {**DNS_FORM, "port": "5353", "new_tsig_secret": "bmV3c2VjcmV0bmV3c2VjcmV0"})
    (updated,) = _events("dns_server.updated")
    assert updated.before == {"port": 53} and updated.after == {"port": 5353, "secrets_changed": ["tsig_secret"]}
    _no_secret_in_trail("c2VjcmV0c2VjcmV0", "bmV3c2VjcmV0bmV3c2VjcmV0")


def test_commands_record_what_admin_records(tmp_path: Path) -> None:
    secret = tmp_path / "tsig"
    secret.write_text("c2VjcmV0c2VjcmV0")
    out = io.StringIO()
    call_command("acme_account", "le", "--directory", "https://acme.example.test/dir", stdout=out)
    call_command("acme_account", "le", "--directory", "https://acme2.example.test/dir", stdout=out)
    call_command("dns_update_server", "bind", "--server", "127.0.0.1", "--zone", "example.test",
                 "--tsig-key-name", "k", "--tsig-secret-file", str(secret), stdout=out)
    call_command("add_certificate", "shop", "shop.example.test", "--account", "le", stdout=out)
    assert [e.actor for e in _events("acme_account.created")] == ["manage.py acme_account"]
    assert _events("acme_account.updated")[0].after == {"directory_url": "https://acme2.example.test/dir"}
    assert _events("dns_server.created")[0].actor == "manage.py dns_update_server"
    created = _events("certificate.created")[0]
    assert created.actor == "manage.py add_certificate" and created.after["domains"] == ["shop.example.test"]
    assert _events("certificate.issuers.changed")[0].after == {"issuers": ["le"]}
    _no_secret_in_trail("c2VjcmV0c2VjcmV0")


def test_moving_a_certificate_to_another_group_withdraws_it_from_the_old_one(
        alice: Client, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    edge, canary = GatewayGroup.objects.create(name="edge"), GatewayGroup.objects.create(name="canary")
    cert = Certificate.objects.create(name="shop", common_name="shop.example.test", domains=["shop.example.test"],
                                      gateway_group=edge)
    with django_capture_on_commit_callbacks(execute=True):
        version = install_expiring_version(cert, days_left=40)
    assert served_serials("edge") == {"shop": version.serial_hex} and served_serials("canary") == {}

    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(reverse("admin:certificates_certificate_change", args=[cert.pk]), {
            "name": "shop", "domains": '["shop.example.test"]', "key_type": "ec256", "challenge_type": "http-01",
            "gateway_group": str(canary.pk), "auto_renew": "on", **CERT_INLINES})
    assert response.status_code == 302, response.content.decode()[:2000]
    (changed,) = _events("certificate.updated")
    assert changed.actor == "alice" and changed.before == {"gateway_group_id": edge.pk}
    assert changed.after == {"gateway_group_id": canary.pk}
    assert served_serials("canary") == {"shop": version.serial_hex}
    assert served_serials("edge") == {}, "withdrawn from the group it left"
