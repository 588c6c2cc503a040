"""Pebble validates for real through the fixture BIND: HTTP-01 succeeds only when the token is served on
``pebble.http_port`` (names resolve to 127.0.0.1 through BIND), and fails when nothing serves it."""

from __future__ import annotations

import datetime as dt

import pytest
from acme import challenges, errors
from cryptography import x509

from certificates.x509 import generate_private_key, make_csr
from tests.peers.bind import BindServer
from tests.peers.pebble import Pebble, acme_test_client, issue_with_http01, serve_http01_tokens


@pytest.mark.slow
def test_http01_issuance_through_bind_resolution(pebble: Pebble, bind_server: BindServer) -> None:
    domain = f"issue-http.{bind_server.zone}"
    fullchain = issue_with_http01(pebble, make_csr(generate_private_key("ec256"), [domain]))
    leaf = x509.load_pem_x509_certificates(fullchain.encode())[0]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [domain]


@pytest.mark.slow
def test_http01_fails_when_nothing_serves_the_token(pebble: Pebble, bind_server: BindServer) -> None:
    acme = acme_test_client(pebble)
    order = acme.new_order(make_csr(generate_private_key("ec256"), [f"no-server.{bind_server.zone}"]).encode())
    authz = order.authorizations[0]
    challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
    response, _ = challb.response_and_validation(acme.net.key)
    with serve_http01_tokens(pebble.http_port, {}):  # up, but 404 for the token: real validation must fail
        acme.answer_challenge(challb, response)
        with pytest.raises(errors.ValidationError):
            acme.poll_authorizations(order, deadline=dt.datetime.now() + dt.timedelta(seconds=30))
