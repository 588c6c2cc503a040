"""Personas and helpers for the certificate request tests: alice asks, bob approves, carol may not approve;
a Gateway group with a policy; CAA and A records written into the fixture BIND with RFC 2136 updates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.query
import dns.tsigkeyring
import dns.update
from django.contrib.auth.models import Group, Permission, User

from certificates.models import AcmeAccount, CertificatePolicy
from gateways.models import GatewayGroup
from tests.certificates_support import unique

CA_ID = "pebble.letsencrypt.test"
PASSWORD = "correct-horse-battery-staple"


@dataclass
class People:
    alice: User  # requester (staff, can add requests)
    bob: User  # approver
    carol: User  # staff without the approve permission


def _staff(name: str, *perms: str) -> User:
    user = User.objects.create_user(f"{name}-{unique('u')}", password=PASSWORD, is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def people() -> People:
    base = ("certificates.add_certificaterequest", "certificates.view_certificaterequest",
            "audit.view_approvalrequest", "audit.change_approvalrequest", "certificates.view_certificate")
    return People(alice=_staff("alice", *base),
                  bob=_staff("bob", *base, "certificates.approve_certificaterequest"),
                  carol=_staff("carol", *base))


def account_for(pebble: Any, bind_server: Any, **extra: Any) -> AcmeAccount:
    from tests.certificates_support import make_account

    return make_account(pebble, caa_identifier=CA_ID, preflight_resolver=bind_server.address, **extra)


def group_with_policy(issuer: AcmeAccount, suffix: str, name: str | None = None, **fields: Any
                      ) -> CertificatePolicy:
    group, _ = GatewayGroup.objects.get_or_create(name=name or unique("grp"))
    policy, _ = CertificatePolicy.objects.update_or_create(
        group=group, defaults={"allowed_suffixes": [suffix], "gateway_issuer": issuer, **fields})
    policy.issuers.add(issuer)
    return policy


def trusted_role(user: User) -> Group:
    role = Group.objects.create(name=unique("cert-requesters"))
    user.groups.add(role)
    return role


def dns_update(bind_server: Any, name: str, rdtype: str, *values: str) -> None:
    """Replace ``name``'s ``rdtype`` RRset in the fixture zone (no values: delete it)."""
    keyring = dns.tsigkeyring.from_text({bind_server.tsig_key_name: bind_server.tsig_secret})
    update = dns.update.Update(f"{bind_server.zone}.", keyring=keyring, keyalgorithm=bind_server.tsig_algorithm)
    if values:
        update.replace(f"{name}.", 60, rdtype, *values)
    else:
        update.delete(f"{name}.", rdtype)
    response = dns.query.tcp(update, bind_server.host, port=bind_server.port, timeout=5)
    assert response.rcode() == 0, response


def name_with_caa(bind_server: Any, *caa: str) -> str:
    """A fresh name in the zone with an A record (HTTP-01 reaches nginx) and the CAA records given."""
    name = f"{unique('caa')}.{bind_server.zone}"
    dns_update(bind_server, name, "A", "127.0.0.1")
    if caa:
        dns_update(bind_server, name, "CAA", *caa)
    return name


def offline_account(bind_server: Any) -> AcmeAccount:
    """An account never contacted (the tests using it stop before any order)."""
    from certificates.acme_client import generate_account_key

    return AcmeAccount.objects.create(name=unique("offline"), directory_url="https://127.0.0.1:9/dir",
                                      key_pem=generate_account_key(), caa_identifier=CA_ID,
                                      preflight_resolver=bind_server.address)
