"""DNS-01 through the renewal service: RFC 2136 + TSIG updates into a real BIND that Pebble queries."""

from __future__ import annotations

import pytest

from certificates import dns01, x509
from certificates.acme_client import LocalError
from certificates.models import AcmeOrder, DnsUpdateServer, OrderStatus
from certificates.services.renewal import renew_certificate
from tests.certificates_support import make_account, make_certificate, unique

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _dns_server(bind_server, secret: str | None = None) -> DnsUpdateServer:  # type: ignore[no-untyped-def]
    return DnsUpdateServer.objects.create(
        name=unique("bind"), server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
        tsig_key_name=bind_server.tsig_key_name, tsig_algorithm=bind_server.tsig_algorithm,
        tsig_secret=secret or bind_server.tsig_secret, propagation_timeout_seconds=10)


def test_wildcard_and_base_name_through_dns01(pebble, bind_server) -> None:  # type: ignore[no-untyped-def]
    base = f"{unique('dns')}.{bind_server.zone}"
    cert = make_certificate([base, f"*.{base}"], make_account(pebble), challenge_type="dns-01",
                            dns_server=_dns_server(bind_server))
    result = renew_certificate(cert.pk)
    assert result.outcome == "issued", result.error
    cert.refresh_from_db()
    assert x509.certificate_info(cert.current_version.cert_pem).domains == [base, f"*.{base}"]
    # the TXT records are removed again
    assert dns01.query_txt(f"_acme-challenge.{base}", bind_server.host, bind_server.port) == set()


def test_a_wrong_tsig_secret_is_a_clear_dns_error(pebble, bind_server) -> None:  # type: ignore[no-untyped-def]
    wrong = "c2VjcmV0LXRoYXQtYmluZC1kb2VzLW5vdC1rbm93LTEyMzQ1Njc4OTA="
    cert = make_certificate([f"{unique('tsig')}.{bind_server.zone}"], make_account(pebble),
                            challenge_type="dns-01", dns_server=_dns_server(bind_server, wrong))
    assert renew_certificate(cert.pk).outcome == "failed"
    order = AcmeOrder.objects.get(certificate=cert)
    assert order.status == OrderStatus.FAILED and order.error.startswith("DNS-01:"), order.error
    assert order.error_type == LocalError.DNS
