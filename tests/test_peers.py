"""The real peers the certificate tests stand on: BIND answers for the test zone, Pebble's directory answers over
HTTPS with the generated CA bundle, its roots parse, and the gate makes it unreachable and back."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509

from tests.peers.bind import BindServer
from tests.peers.pebble import Pebble


def _directory(pebble: Pebble) -> dict[str, object]:
    context = ssl.create_default_context(cafile=pebble.ca_bundle)
    with urllib.request.urlopen(pebble.directory_url, context=context, timeout=5) as response:
        return json.loads(response.read())


def test_bind_resolves_any_name_in_zone_to_loopback(bind_server: BindServer) -> None:
    query = dns.message.make_query(f"x.{bind_server.zone}.", "A")
    response = dns.query.udp(query, bind_server.host, port=bind_server.port, timeout=2)
    addresses = [rr.address for rrset in response.answer for rr in rrset if rr.rdtype == dns.rdatatype.A]
    assert addresses == ["127.0.0.1"]
    assert response.flags & dns.flags.AA  # authoritative


def test_bind_answers_over_tcp_with_dig(bind_server: BindServer) -> None:
    out = subprocess.run(
        ["dig", "+tcp", "+short", "-p", str(bind_server.port), f"@{bind_server.host}", f"a.b.{bind_server.zone}"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout.split()
    assert out == ["127.0.0.1"]


def test_bind_refuses_names_outside_its_zone(bind_server: BindServer) -> None:
    query = dns.message.make_query("example.com.", "A")
    response = dns.query.udp(query, bind_server.host, port=bind_server.port, timeout=2)
    assert response.rcode() == dns.rcode.REFUSED


def test_pebble_directory_over_https_with_ca_bundle(pebble: Pebble) -> None:
    directory = _directory(pebble)
    assert {"newAccount", "newNonce", "newOrder"} <= directory.keys()
    # without the bundle the HTTPS certificate is not trusted
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(pebble.directory_url, context=ssl.create_default_context(), timeout=5)


def test_pebble_roots_and_intermediates_parse(pebble: Pebble) -> None:
    roots = x509.load_pem_x509_certificates(pebble.roots_pem().encode())
    intermediates = x509.load_pem_x509_certificates(pebble.intermediates_pem().encode())
    assert roots and intermediates
    root = roots[0]
    assert root.subject == root.issuer  # self-signed
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert intermediates[0].issuer == root.subject


def test_pebble_stop_and_start_keep_the_same_url_and_state(pebble: Pebble) -> None:
    roots_before = pebble.roots_pem()
    pebble.stop()
    try:
        with pytest.raises(urllib.error.URLError):
            _directory(pebble)
    finally:
        pebble.start()
    assert "newOrder" in _directory(pebble)
    assert pebble.roots_pem() == roots_before  # same CA: the process was not restarted


def test_pebble_eab_requires_external_account_binding(pebble_eab: Pebble) -> None:
    directory = _directory(pebble_eab)
    meta = directory.get("meta")
    assert isinstance(meta, dict) and meta.get("externalAccountRequired") is True
    assert set(pebble_eab.eab_keys) == {"kid-1", "kid-2"}
