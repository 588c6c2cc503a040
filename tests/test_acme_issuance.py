"""ACME issuance on a real Pebble with real HTTP-01 validation against a real nginx (the challenge files
kept by a Gateway stand-in; the full push-plane path is in test_certificates_e2e.py)."""

from __future__ import annotations

import time

import pytest
from cryptography import x509 as cx509
from django.utils import timezone

from certificates import x509
from certificates.acme_client import AcmeClient, AcmeError
from certificates.models import (
    AcmeChallenge,
    AcmeOrder,
    CertificateState,
    CertificateVersion,
    OrderStatus,
)
from certificates.services import issuance
from certificates.services.renewal import renew_certificate
from certificates.services.revocation import revoke_version
from tests.certificates_support import (
    assert_resumed_at_the_ca,
    challenge_files,
    make_account,
    make_certificate,
    unique,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def http01(pebble, nginx_factory, monkeypatch):  # type: ignore[no-untyped-def]
    """nginx on the port Pebble validates HTTP-01 against, its challenge dir kept in sync."""
    ngx = nginx_factory(http_port=pebble.http_port)
    with challenge_files(ngx.challenge_dir, monkeypatch):
        yield ngx


def test_issues_multi_san_ec256_with_http01(pebble, bind_server, http01) -> None:  # type: ignore[no-untyped-def]
    domains = [f"{unique('a')}.{bind_server.zone}", f"{unique('b')}.{bind_server.zone}"]
    account = make_account(pebble)
    cert = make_certificate(domains, account)

    result = renew_certificate(cert.pk)

    assert result.outcome == "issued", result.error
    cert.refresh_from_db()
    version = cert.current_version
    assert version is not None and version.pk == result.version_id
    assert version.source == "acme" and version.domains == domains and version.key_type == "ec256"
    assert x509.key_matches_certificate(version.key_pem, version.cert_pem)
    assert version.chain_pem.strip(), "the intermediate is kept"
    leaf = cx509.load_pem_x509_certificate(version.cert_pem.encode())
    assert format(leaf.serial_number, "x") == version.serial_hex
    assert cert.state == CertificateState.VALID and cert.not_after == version.not_after
    assert cert.renew_after == x509.renewal_due_at(version.not_before, version.not_after)
    assert cert.consecutive_failures == 0 and cert.last_error == ""
    order = AcmeOrder.objects.get(certificate=cert)
    assert order.status == OrderStatus.VALID and order.order_url.startswith(pebble.directory_url.rsplit("/", 1)[0])
    assert not AcmeChallenge.objects.filter(order=order).exists(), "tokens are withdrawn after the order"
    account.refresh_from_db()
    assert account.account_url, "registered once and remembered"

    # a redelivered task is a no-op; "renew now" (force) makes exactly one more version
    assert renew_certificate(cert.pk).outcome == "not_due"
    assert renew_certificate(cert.pk, force=True).outcome == "issued"
    assert CertificateVersion.objects.filter(certificate=cert).count() == 2


def test_rsa_key_type(pebble, bind_server, http01) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('rsa')}.{bind_server.zone}"], make_account(pebble), key_type="rsa2048")
    assert renew_certificate(cert.pk).outcome == "issued"
    cert.refresh_from_db()
    assert cert.current_version.key_type == "rsa2048"
    assert "RSA" in type(cx509.load_pem_x509_certificate(cert.current_version.cert_pem.encode())
                         .public_key()).__name__


def test_resumes_a_stored_order_after_a_crash_without_a_second_version(pebble, bind_server, http01) -> None:  # type: ignore[no-untyped-def]
    """The worker died after finalizing: the next attempt polls the stored order and downloads that very
    certificate (same key, same serial) instead of ordering again."""
    cert = make_certificate([f"{unique('resume')}.{bind_server.zone}"], make_account(pebble))
    account = cert.issuers.get()
    order = issuance.create_order(cert, account, cert.domains)
    client = AcmeClient.connect(account)
    state = client.new_order(order.domains)
    AcmeOrder.objects.filter(pk=order.pk).update(order_url=state.url, status=OrderStatus.AUTHORIZING)
    order.refresh_from_db()
    issuance._satisfy_challenges(order, client, state, time.monotonic() + 30)
    state = client.wait_order(state.url, {"ready"}, time.monotonic() + 30)
    client.finalize(state, order.csr_pem)
    AcmeOrder.objects.filter(pk=order.pk).update(status=OrderStatus.FINALIZING)
    # ... crash here: nothing downloaded, nothing stored

    result = renew_certificate(cert.pk)

    assert result.outcome == "issued", result.error
    assert AcmeOrder.objects.filter(certificate=cert).count() == 1, "no second order"
    version = CertificateVersion.objects.get(certificate=cert)
    assert version.order_id == order.pk and version.key_pem == order.key_pem
    assert_resumed_at_the_ca(order.pk, state.url, version)
    # downloading the same order again finds the same version (the fingerprint backstop)
    assert renew_certificate(cert.pk, force=True).outcome == "issued"
    assert CertificateVersion.objects.filter(certificate=cert).count() == 2  # the forced one is a new order


def test_order_past_its_deadline_is_abandoned_and_a_fresh_one_issued(pebble, bind_server, http01) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('stuck')}.{bind_server.zone}"], make_account(pebble))
    stuck = issuance.create_order(cert, cert.issuers.get(), cert.domains)
    AcmeOrder.objects.filter(pk=stuck.pk).update(deadline=timezone.now() - timezone.timedelta(seconds=1),
                                                 status=OrderStatus.AUTHORIZING)
    assert renew_certificate(cert.pk).outcome == "issued"
    stuck.refresh_from_db()
    assert stuck.status == OrderStatus.ABANDONED and "deadline" in stuck.error
    assert CertificateVersion.objects.filter(certificate=cert).count() == 1


def test_issuer_fallback_uses_the_next_issuer(pebble, bind_server, http01) -> None:  # type: ignore[no-untyped-def]
    dead = make_account(pebble, directory_url="https://127.0.0.1:9/dir")
    live = make_account(pebble)
    cert = make_certificate([f"{unique('fallback')}.{bind_server.zone}"], dead, live)
    assert renew_certificate(cert.pk).outcome == "issued"
    failed, ok = AcmeOrder.objects.filter(certificate=cert).order_by("id")
    assert failed.account == dead and failed.status == OrderStatus.FAILED
    assert "cannot reach the ACME server" in failed.error
    assert ok.account == live and ok.status == OrderStatus.VALID
    cert.refresh_from_db()
    assert cert.current_version.account == live


def test_external_account_binding(pebble_eab, bind_server, nginx_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    kid, hmac_key = next(iter(pebble_eab.eab_keys.items()))
    ngx = nginx_factory(http_port=pebble_eab.http_port)
    without = make_account(pebble_eab)
    with pytest.raises(AcmeError, match="External Account Binding"):
        AcmeClient.connect(without).ensure_registered()
    account = make_account(pebble_eab, eab_kid=kid, eab_hmac_key=hmac_key)
    cert = make_certificate([f"{unique('eab')}.{bind_server.zone}"], account)
    with challenge_files(ngx.challenge_dir, monkeypatch):
        assert renew_certificate(cert.pk).outcome == "issued"
    account.refresh_from_db()
    assert account.account_url


def test_revoke_a_version(pebble, bind_server, http01) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('revoke')}.{bind_server.zone}"], make_account(pebble))
    assert renew_certificate(cert.pk).outcome == "issued"
    cert.refresh_from_db()
    revoke_version(cert.current_version, "superseded", actor="test")
    cert.current_version.refresh_from_db()
    assert cert.current_version.revoked_at is not None
    assert cert.current_version.revocation_reason == "superseded"
    with pytest.raises(AcmeError, match="alreadyRevoked|already revoked"):  # the CA really recorded it
        AcmeClient.connect(cert.current_version.account).revoke(cert.current_version.cert_pem, 4)
