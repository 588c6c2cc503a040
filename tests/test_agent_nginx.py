"""End to end with a real nginx as the data plane: the agent writes certificates, the nginx include and ACME
challenges from the push stream, runs ``nginx -t`` + ``nginx -s reload``, and nginx serves them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateways.grpc_server import ServerConfig
from gateways.services import publish_desired_state, register_resource, wait_for_acks
from tests.peers.nginx import NginxServer
from tests.push_support import (
    DEFAULT_STATE,
    AgentProcess,
    Pki,
    ServerThread,
    agent_settings,
    cert_entry,
    placeholder_builders,
    wait_until,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def state() -> Iterator[dict[str, Any]]:
    with placeholder_builders():
        data: dict[str, Any] = dict(DEFAULT_STATE)
        for rtype in DEFAULT_STATE:
            register_resource(rtype, lambda g, t=rtype: data[t])
        yield data


def test_agent_drives_real_nginx(state: dict[str, Any], nginx: NginxServer, tmp_path: Path) -> None:
    pki = Pki.create(tmp_path / "pki")
    srv = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                    ca=str(pki.ca), debounce_seconds=0.02)).start()
    settings = agent_settings(tmp_path / "agent", pki, srv.port, "edge-1", "default",
                              challenge_dir=str(nginx.challenge_dir), nginx_include=str(nginx.tls_include),
                              nginx_listen=nginx.https_listen, nginx_http_listen=f"127.0.0.1:{nginx.http_port}",
                              check_command=nginx.check_command, reload_command=nginx.reload_command)
    agent = AgentProcess(tmp_path / "agent", settings).start()
    try:
        wait_until(lambda: agent.known().get("certificates"), timeout=15, message="agent connected")
        entry, pem = cert_entry(["site.example.test", "*.site.example.test"])
        state["certificates"] = {"certificates": [entry]}
        versions = publish_desired_state("certificates")
        assert wait_for_acks(versions, timeout=15).ok
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
        nginx.wait_for_certificate("site.example.test", der, timeout=10)
        nginx.wait_for_certificate("api.site.example.test", der, timeout=10)  # the wildcard name
        assert nginx.peer_certificate("other.test") != der  # other names still get the default server
        certs = Path(settings["cert_dir"])
        assert (certs / "*.site.example.test.crt").read_text() == pem
        assert "server_name site.example.test *.site.example.test;" in nginx.tls_include.read_text()

        state["acme_challenges"] = {"challenges": [
            {"domain": "site.example.test", "token": "tok_AbC-1", "key_authorization": "tok_AbC-1.thumbprint"}]}
        versions = publish_desired_state("acme_challenges")
        assert wait_for_acks(versions, timeout=15).ok
        assert nginx.get("/.well-known/acme-challenge/tok_AbC-1", host="site.example.test") == (
            200, b"tok_AbC-1.thumbprint")

        state["acme_challenges"] = {"challenges": []}  # withdrawn tokens disappear
        assert wait_for_acks(publish_desired_state("acme_challenges"), timeout=15).ok
        assert nginx.get("/.well-known/acme-challenge/tok_AbC-1", host="site.example.test")[0] == 404
    finally:
        agent.stop()
        srv.stop()
