"""DNS-01 end to end: our RFC 2136 updates land in BIND, Pebble (``-dnsserver`` = that BIND) reads the TXT records
and issues a wildcard certificate, which validates against Pebble's root."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from acme import challenges

from certificates import dns01
from certificates import x509 as cx
from tests.peers.bind import BindServer
from tests.peers.pebble import Pebble, acme_test_client


@pytest.mark.slow
def test_wildcard_certificate_through_dns01(pebble: Pebble, bind_server: BindServer) -> None:
    base = f"dns-{secrets.token_hex(3)}.{bind_server.zone}"
    domains = [base, f"*.{base}"]
    target = dns01.UpdateTarget(server=bind_server.host, port=bind_server.port, zone=bind_server.zone,
                                tsig_key_name=bind_server.tsig_key_name, tsig_secret=bind_server.tsig_secret,
                                propagation_timeout=10)
    key_pem = cx.generate_private_key("ec256")
    acme = acme_test_client(pebble)
    order = acme.new_order(cx.make_csr(key_pem, domains).encode())
    records, answers = [], []
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        response, validation = challb.response_and_validation(acme.net.key)
        domain = ("*." if authz.body.wildcard else "") + authz.body.identifier.value
        records.append((domain, validation))
        answers.append((challb, response))
    assert len(records) == 2  # base and wildcard: two values on one name
    dns01.publish_and_wait(target, records)
    try:
        for challb, response in answers:
            acme.answer_challenge(challb, response)
        order = acme.poll_and_finalize(order, deadline=dt.datetime.now() + dt.timedelta(seconds=30))
    finally:
        dns01.remove_txt_records(target, records)
    info = cx.validate_issued_certificate(order.fullchain_pem, "", key_pem, domains, pebble.roots_pem())
    assert sorted(info.domains) == sorted(domains)
    assert cx.name_covered(f"anything.{base}", info.domains)
