"""Pebble validates for real through the fixture BIND: HTTP-01 succeeds only when the token is served on
``pebble.http_port`` (names resolve to 127.0.0.1 through BIND), and fails when nothing serves it."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import threading
from collections.abc import Iterator

import josepy
import pytest
import requests
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.peers.bind import BindServer
from tests.peers.pebble import Pebble


@contextlib.contextmanager
def serve_tokens(port: int, tokens: dict[str, str]) -> Iterator[None]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            body = tokens.get(self.path.rsplit("/", 1)[-1])
            self.send_response(200 if body else 404)
            self.end_headers()
            if body:
                self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _acme_client(pebble: Pebble) -> client.ClientV2:
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    session = requests.Session()
    session.verify = pebble.ca_bundle
    net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=pebble.ca_bundle)
    net.session = session
    directory = client.ClientV2.get_directory(pebble.directory_url, net)
    acme = client.ClientV2(directory, net)
    account = acme.new_account(messages.NewRegistration.from_data(email="t@example.test",
                                                                  terms_of_service_agreed=True))
    net.account = account
    return acme


def _csr(domain: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.mark.slow
def test_http01_issuance_through_bind_resolution(pebble: Pebble, bind_server: BindServer) -> None:
    acme = _acme_client(pebble)
    domain = f"issue-http.{bind_server.zone}"
    order = acme.new_order(_csr(domain))
    tokens: dict[str, str] = {}
    answers = []
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = challb.response_and_validation(acme.net.key)
        tokens[challb.chall.encode("token")] = validation
        answers.append((challb, response))
    with serve_tokens(pebble.http_port, tokens):
        for challb, response in answers:
            acme.answer_challenge(challb, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        order = acme.poll_and_finalize(order, deadline=deadline)
    leaf = x509.load_pem_x509_certificates(order.fullchain_pem.encode())[0]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [domain]


@pytest.mark.slow
def test_http01_fails_when_nothing_serves_the_token(pebble: Pebble, bind_server: BindServer) -> None:
    acme = _acme_client(pebble)
    order = acme.new_order(_csr(f"no-server.{bind_server.zone}"))
    authz = order.authorizations[0]
    challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
    response, _ = challb.response_and_validation(acme.net.key)
    with serve_tokens(pebble.http_port, {}):  # up, but 404 for the token: real validation must fail
        acme.answer_challenge(challb, response)
        with pytest.raises(errors.ValidationError):
            acme.poll_authorizations(order, deadline=dt.datetime.now() + dt.timedelta(seconds=30))
