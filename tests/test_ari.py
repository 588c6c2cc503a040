"""ACME Renewal Information (RFC 9773) and certificate profiles against the real Pebble, through the pass-through
proxy of tests/peers/ari_proxy.py (Pebble 2.4 offers neither): renewal windows, ``replaces`` (and the retry
without it when the CA refuses), ``profile`` on newOrder, and a profile the CA does not offer.

Issuance uses DNS-01 into the fixture BIND, so no Gateway/agent is needed."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from certificates import x509
from certificates.acme_client import LocalError
from certificates.models import AcmeOrder, CertificateIssuer, CertificateVersion, DnsUpdateServer, OrderStatus
from certificates.services.renewal import renew_certificate
from tests.certificates_support import make_account, make_certificate, unique

if TYPE_CHECKING:  # not imported at run time: pytest loads the module as a plugin (assertion rewriting)
    from tests.peers.ari_proxy import AriProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _dns_server(bind_server) -> DnsUpdateServer:  # type: ignore[no-untyped-def]
    return DnsUpdateServer.objects.create(
        name=unique("bind"), server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
        tsig_key_name=bind_server.tsig_key_name, tsig_algorithm=bind_server.tsig_algorithm,
        tsig_secret=bind_server.tsig_secret, propagation_timeout_seconds=10)


def _certificate(proxy: AriProxy, bind_server, prefix: str, **fields):  # type: ignore[no-untyped-def]
    account = make_account(proxy.pebble, directory_url=proxy.directory_url, tls_ca_bundle=proxy.ca_bundle)
    domain = f"{unique(prefix)}.{bind_server.zone}"
    return make_certificate([domain], account, challenge_type="dns-01", dns_server=_dns_server(bind_server),
                            **fields)


def _issue(cert, **kwargs) -> CertificateVersion:  # type: ignore[no-untyped-def]
    result = renew_certificate(cert.pk, **kwargs)
    assert result.outcome == "issued", result.error
    cert.refresh_from_db()
    assert cert.current_version_id == result.version_id
    return cert.current_version


def test_proxy_adds_ari_and_profiles_and_passes_the_rest_through(ari_pebble: AriProxy) -> None:
    import requests

    directory = requests.get(ari_pebble.directory_url, verify=ari_pebble.ca_bundle, timeout=10).json()
    assert directory["renewalInfo"] == ari_pebble.renewal_info_url
    assert set(directory["meta"]["profiles"]) == {"classic", "shortlived"}
    assert directory["newOrder"].startswith(ari_pebble.base_url + "/"), "Pebble's own URLs point at the proxy"
    nonce = requests.head(directory["newNonce"], verify=ari_pebble.ca_bundle, timeout=10)
    assert nonce.headers["Replay-Nonce"], "non-directory requests reach Pebble"
    ari_pebble.window = None
    missing = requests.get(ari_pebble.renewal_info_url + "/aaa.bbb", verify=ari_pebble.ca_bundle, timeout=10)
    assert missing.status_code == 404 and ari_pebble.ari_requests == ["aaa.bbb"]


def test_ari_window_sets_renew_after_earlier_than_the_policy(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    start = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)
    ari_pebble.window = (start, start + dt.timedelta(hours=12))
    cert = _certificate(ari_pebble, bind_server, "ari-window")
    version = _issue(cert)
    assert version.ari_cert_id and ari_pebble.ari_requests == [version.ari_cert_id]
    assert version.ari_cert_id == x509.ari_cert_id(version.cert_pem)
    policy_due = x509.renewal_due_at(version.not_before, version.not_after, days_before=30)
    assert start < policy_due, "the window must be earlier than the local policy for this test to mean anything"
    assert cert.renew_after == start
    # no window (the CA does not know the certificate): the local policy applies
    ari_pebble.window = None
    version2 = _issue(cert, force=True)
    assert ari_pebble.ari_requests[-1] == version2.ari_cert_id
    assert cert.renew_after == x509.renewal_due_at(version2.not_before, version2.not_after, days_before=30)


def test_renewal_sends_replaces_with_the_current_ari_id(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    cert = _certificate(ari_pebble, bind_server, "ari-replaces")
    first = _issue(cert)
    assert "replaces" not in ari_pebble.orders_for(cert.domains)[0].payload, "nothing to replace yet"
    second = _issue(cert, force=True)
    assert second.pk != first.pk
    orders = ari_pebble.orders_for(cert.domains)
    assert len(orders) == 2 and not orders[1].rejected
    assert orders[1].payload["replaces"] == first.ari_cert_id == x509.ari_cert_id(first.cert_pem)
    assert AcmeOrder.objects.get(pk=second.order_id).replaces == first.ari_cert_id


@pytest.mark.parametrize(("problem_type", "detail"), [
    ("urn:ietf:params:acme:error:alreadyReplaced", "certificate already replaced by another order"),  # RFC 9773
    ("urn:ietf:params:acme:error:malformed", "cannot find the certificate named in replaces"),  # Boulder-style
])
def test_refused_replaces_is_retried_without_it(ari_pebble: AriProxy, bind_server, problem_type: str,  # type: ignore[no-untyped-def]
                                                detail: str) -> None:
    cert = _certificate(ari_pebble, bind_server, "ari-refused")
    first = _issue(cert)
    ari_pebble.reject_next_replaces(problem_type, detail, status=409 if "Replaced" in problem_type else 400)
    second = _issue(cert, force=True)
    orders = ari_pebble.orders_for(cert.domains)[1:]
    assert [o.rejected for o in orders] == [True, False]
    assert orders[0].payload["replaces"] == first.ari_cert_id
    assert "replaces" not in orders[1].payload
    assert CertificateVersion.objects.filter(certificate=cert).count() == 2, "exactly one new version"
    order = AcmeOrder.objects.get(pk=second.order_id)
    assert order.status == OrderStatus.VALID and order.replaces == ""
    cert.refresh_from_db()
    assert cert.consecutive_failures == 0 and cert.last_error == ""


def test_other_order_errors_with_replaces_are_not_retried(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    """A refusal that is not about ``replaces`` is the attempt's failure, not a silent second order."""
    cert = _certificate(ari_pebble, bind_server, "ari-other")
    first = _issue(cert)
    ari_pebble.reject_next_replaces("urn:ietf:params:acme:error:rejectedIdentifier", "policy forbids this name",
                                    status=400)
    assert renew_certificate(cert.pk, force=True).outcome == "failed"
    assert [o.rejected for o in ari_pebble.orders_for(cert.domains)[1:]] == [True]
    cert.refresh_from_db()
    assert cert.current_version_id == first.pk and "policy forbids this name" in cert.last_error


def test_profile_is_sent_on_new_order(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    cert = _certificate(ari_pebble, bind_server, "ari-profile", profile="shortlived")
    _issue(cert)
    (order,) = ari_pebble.orders_for(cert.domains)
    assert order.payload["profile"] == "shortlived"


def test_account_default_profile_is_sent_when_the_certificate_names_none(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    cert = _certificate(ari_pebble, bind_server, "ari-acct-profile")
    account = CertificateIssuer.objects.get(certificate=cert).account
    account.profile = "classic"
    account.save(update_fields=["profile"])
    _issue(cert)
    (order,) = ari_pebble.orders_for(cert.domains)
    assert order.payload["profile"] == "classic"


def test_a_profile_the_ca_does_not_offer_is_a_clear_error(ari_pebble: AriProxy, bind_server) -> None:  # type: ignore[no-untyped-def]
    cert = _certificate(ari_pebble, bind_server, "ari-noprofile", profile="tlsserver")
    result = renew_certificate(cert.pk)
    assert result.outcome == "failed"
    order = AcmeOrder.objects.get(certificate=cert)
    assert order.status == OrderStatus.FAILED and not order.order_url
    assert order.error_type == LocalError.PROFILE
    assert "profile 'tlsserver' is not offered" in order.error and "classic, shortlived" in order.error
    assert ari_pebble.orders_for(cert.domains) == [], "nothing was sent to newOrder"
    assert not CertificateIssuer.objects.get(certificate=cert).account.account_url, "nor to newAccount"
    cert.refresh_from_db()
    assert "profile 'tlsserver' is not offered" in cert.last_error
    assert not CertificateVersion.objects.filter(certificate=cert).exists(), "no temporary certificate hides it"
