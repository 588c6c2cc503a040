"""End to end on real components: Pebble validates HTTP-01 against nginx serving the challenge files that the
reference gateway-agent wrote from the push stream; the issued certificate is pushed, written by the agent,
nginx reloaded, and a TLS handshake shows its serial. Failover through the beat scan with Pebble down, and
swap-back when it returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from django.utils import timezone

from certificates import x509
from certificates.models import Certificate, CertificateState
from certificates.services import renewal, scan
from gateways import resources
from gateways.grpc_server import ServerConfig
from gateways.services import desired_version, wait_for_acks
from tests.certificates_support import install_expiring_version, make_account, make_certificate, unique
from tests.peers.nginx import NginxServer
from tests.push_support import DEFAULT_STATE, AgentProcess, Pki, ServerThread, agent_settings, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@dataclass
class Fleet:
    nginx: NginxServer
    agent: AgentProcess
    server: ServerThread

    def served(self, name: str) -> cx509.Certificate:
        return cx509.load_der_x509_certificate(self.nginx.peer_certificate(name))

    def wait_served(self, name: str, serial_hex: str, timeout: float = 20) -> cx509.Certificate:
        def check() -> cx509.Certificate | None:
            cert = self.served(name)
            return cert if format(cert.serial_number, "x") == serial_hex else None

        return wait_until(check, timeout=timeout, message=f"nginx to serve serial {serial_hex} for {name}")


@pytest.fixture
def fleet(pebble, nginx_factory, tmp_path: Path) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    """run_grpc + one gateway-agent driving a real nginx whose HTTP port is the one Pebble validates."""
    saved = dict(resources._builders)
    for rtype, data in DEFAULT_STATE.items():  # other apps' resources, if not built yet: empty states
        if rtype not in resources._builders:
            resources.register_resource(rtype, lambda g, d=data: d)
    ngx = nginx_factory(http_port=pebble.http_port)
    pki = Pki.create(tmp_path / "pki")
    server = ServerThread(ServerConfig(bind="127.0.0.1:0", cert=str(pki.server_cert), key=str(pki.server_key),
                                       ca=str(pki.ca), debounce_seconds=0.02)).start()
    settings = agent_settings(tmp_path / "agent", pki, server.port, "edge-1", "default",
                              challenge_dir=str(ngx.challenge_dir), nginx_include=str(ngx.tls_include),
                              nginx_listen=ngx.https_listen, nginx_http_listen=f"127.0.0.1:{ngx.http_port}",
                              check_command=ngx.check_command, reload_command=ngx.reload_command)
    agent = AgentProcess(tmp_path / "agent", settings).start()
    try:
        wait_until(lambda: agent.known().get("certificates"), timeout=20, message="agent connected")
        yield Fleet(ngx, agent, server)
    finally:
        agent.stop()
        server.stop()
        resources._builders.clear()
        resources._builders.update(saved)


def _pushed_and_acked(cert: Certificate) -> None:
    version = desired_version("certificates", cert.gateway_group or _default_group())
    assert version is not None
    assert wait_for_acks([version], timeout=20).ok


def _default_group():  # type: ignore[no-untyped-def]
    from gateways.models import GatewayGroup

    return GatewayGroup.objects.get(name="default")


def test_http01_issuance_through_agent_and_nginx(pebble, bind_server, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    domains = [f"{unique('e2e')}.{bind_server.zone}", f"{unique('www')}.{bind_server.zone}"]
    cert = make_certificate(domains, make_account(pebble))

    result = renewal.renew_certificate(cert.pk)

    assert result.outcome == "issued", result.error
    cert.refresh_from_db()
    version = cert.current_version
    _pushed_and_acked(cert)
    for name in domains:  # TLS handshake to nginx shows the new certificate's serial, for every SAN
        served = fleet.wait_served(name, version.serial_hex)
        assert served.fingerprint(hashes.SHA256()).hex() == version.fingerprint_sha256
    assert not any(fleet.nginx.challenge_dir.iterdir()), "challenge files withdrawn after the order"


def test_failover_within_one_scan_and_swap_back(pebble, bind_server, fleet: Fleet) -> None:  # type: ignore[no-untyped-def]
    name = f"{unique('fo')}.{bind_server.zone}"
    cert = make_certificate([name], make_account(pebble))
    old = install_expiring_version(cert, days_left=5)
    _pushed_and_acked(cert)
    fleet.wait_served(name, old.serial_hex)
    Certificate.objects.filter(pk=cert.pk).update(renew_after=timezone.now())  # due (5 days left)

    def run_renewal(pk: int) -> None:  # what the enqueued task runs, called inline
        renewal.renew_certificate(pk)

    pebble.stop()
    try:
        counts = scan.scan_expiring_certificates(run_renewal, lambda pk: None)  # one scan
    finally:
        pebble.start()
    assert counts["due"] >= 1
    cert.refresh_from_db()
    temp = cert.current_version
    assert cert.state == CertificateState.TEMPORARY and temp.is_temporary
    _pushed_and_acked(cert)
    served = fleet.wait_served(name, temp.serial_hex)
    assert x509.certificate_info(served).is_temporary, "nginx serves the marked temporary certificate"

    # Pebble is back: once the backoff has passed the retry job renews and the real one replaces it
    Certificate.objects.filter(pk=cert.pk).update(next_attempt_at=timezone.now())
    assert scan.retry_failed_renewals(run_renewal) == {"retried": 1}
    cert.refresh_from_db()
    real = cert.current_version
    assert real.source == "acme" and cert.state == CertificateState.VALID
    _pushed_and_acked(cert)
    assert not x509.certificate_info(fleet.wait_served(name, real.serial_hex)).is_temporary
    temp.refresh_from_db()
    assert temp.retired_at is not None
