"""The operator's path without admin: acme_account, dns_update_server, add_certificate, renew_certificate,
list_certificates — against the real Pebble and BIND; bad input is refused by name and creates nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from certificates import x509
from certificates.models import AcmeAccount, Certificate, DnsUpdateServer
from tests.certificates_support import unique

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_issue_a_certificate_with_the_commands(pebble, bind_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    roots = tmp_path / "roots.pem"
    roots.write_text(pebble.roots_pem())
    secret = tmp_path / "tsig"
    secret.write_text(bind_server.tsig_secret)
    out = run("acme_account", "pebble", "--directory", pebble.directory_url, "--ca-bundle", pebble.ca_bundle,
              "--trust-roots", str(roots), "--email", "ops@example.test", "--register")
    assert "created ACME account pebble" in out and "registered: https://" in out
    assert AcmeAccount.objects.get(name="pebble").account_url
    run("dns_update_server", "bind", "--server", bind_server.host, "--port", str(bind_server.port),
        "--zone", bind_server.zone, "--tsig-key-name", bind_server.tsig_key_name, "--tsig-secret-file", str(secret))
    assert DnsUpdateServer.objects.get(name="bind").tsig_secret == bind_server.tsig_secret
    domain = f"{unique('cli')}.{bind_server.zone}"
    out = run("add_certificate", "shop", domain, f"www.{domain}", "--account", "pebble",
              "--challenge", "dns-01", "--dns-server", "bind")
    assert "added certificate shop" in out
    out = run("renew_certificate", "shop")
    assert out.startswith("shop: issued (version "), out
    cert = Certificate.objects.get(name="shop")
    assert x509.certificate_info(cert.current_version.cert_pem).domains == [domain, f"www.{domain}"]
    assert "shop" in run("list_certificates") and "valid" in run("list_certificates")
    assert run("renew_certificate", "shop").startswith("shop: not_due")  # idempotent: nothing is due
    assert AuditEvent.objects.filter(action="certificate.created", object_id=str(cert.pk)).exists()


@pytest.mark.parametrize("args, message", [
    (["bad", "exa mple.test"], "domains:"),
    (["wild", "*.example.test"], "wildcard names need dns-01"),
    (["nodns", "a.example.test", "--challenge", "dns-01"], "dns-01 needs a DNS update server"),
])
def test_bad_input_is_refused_and_creates_nothing(args, message, pebble) -> None:  # type: ignore[no-untyped-def]
    run("acme_account", "acct", "--directory", pebble.directory_url)
    with pytest.raises(CommandError, match=message):
        run("add_certificate", *args, "--account", "acct")
    assert not Certificate.objects.exists()


def test_unknown_account_is_named() -> None:
    with pytest.raises(CommandError, match="no ACME account 'nope'"):
        run("add_certificate", "x", "x.example.test", "--account", "nope")
