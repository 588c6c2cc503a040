"""End to end on real components: Pebble validates HTTP-01 against nginx serving the challenge files that the
reference gateway-agent wrote from the push stream; the issued certificate is pushed, written by the agent,
nginx reloaded, and a TLS handshake shows its serial. Failover through the beat scan with Pebble down, and
swap-back when it returns."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from django.core.management import call_command
from django.utils import timezone

from certificates import x509
from certificates.acme_client import AcmeClient, LocalError
from certificates.models import AcmeOrder, Certificate, CertificateState, OrderStatus
from certificates.services import renewal, scan
from certificates.services.renewal import RenewalOutcome
from gateways.models import GatewayGroup
from gateways.services import desired_version, wait_for_acks
from tests.certificates_fleet import Fleet, SlowChallengeAgent, running_fleet
from tests.certificates_support import install_expiring_version, make_account, make_certificate, unique
from tests.push_support import self_signed_pem

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def fleet(pebble, nginx_factory, tmp_path: Path) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    """run_grpc + one gateway-agent driving a real nginx whose HTTP port is the one Pebble validates."""
    with running_fleet(nginx_factory, tmp_path, http_port=pebble.http_port) as running:
        yield running


@pytest.fixture
def slow_fleet(pebble, nginx_factory, tmp_path: Path) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    """The same, with an agent that ACKs ACME tokens 1.5 s late and logs when."""
    with running_fleet(nginx_factory, tmp_path, http_port=pebble.http_port,
                       agent_class=SlowChallengeAgent) as running:
        yield running


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


def _record_answers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """(token, wall-clock time) of every challenge the Worker asks the CA to validate."""
    answered: list[tuple[str, float]] = []
    answer = AcmeClient.answer

    def recording(self: AcmeClient, challenge) -> None:  # type: ignore[no-untyped-def]
        answered.append((challenge.token, time.time()))
        answer(self, challenge)

    monkeypatch.setattr(AcmeClient, "answer", recording)
    return answered


def test_the_ca_is_answered_only_after_the_gateway_acked_the_tokens(  # type: ignore[no-untyped-def]
        pebble, bind_server, slow_fleet: Fleet, monkeypatch) -> None:
    """Every time, not once in six runs: the agent takes its tokens 1.5 s late, so a Worker that answers the
    CA before wait_for_acks said yes answers before the agent's ACK (and Pebble finds no token)."""
    answered = _record_answers(monkeypatch)
    cert = make_certificate([f"{unique('ack')}.{bind_server.zone}", f"{unique('ack2')}.{bind_server.zone}"],
                            make_account(pebble))

    result = renewal.renew_certificate(cert.pk)

    applied = slow_fleet.agent.tokens_applied()  # type: ignore[attr-defined]
    assert answered, "the CA was asked to validate"
    for token, at in answered:
        assert token in applied, f"answered token {token} that the Gateway never took"
        assert at > applied[token], f"answered the CA {applied[token] - at:.3f}s before the Gateway took {token}"
    assert result.outcome == RenewalOutcome.ISSUED, result.error


def test_no_connected_gateway_means_no_answer_to_the_ca(pebble, bind_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """wait_for_acks says no (nobody would serve the token): the CA is never asked to validate."""
    GatewayGroup.objects.get_or_create(name="default")
    answered = _record_answers(monkeypatch)
    cert = make_certificate([f"{unique('nogw')}.{bind_server.zone}"], make_account(pebble))

    result = renewal.renew_certificate(cert.pk)

    assert result.outcome == RenewalOutcome.FAILED and "no Gateway instance is connected" in result.error
    assert answered == []
    order = AcmeOrder.objects.get(certificate=cert, account__isnull=False)
    assert order.status == OrderStatus.FAILED and order.error_type == LocalError.PUSH


def test_an_agent_connected_before_an_import_serves_the_imported_certificate(  # type: ignore[no-untyped-def]
        nginx_factory, tmp_path: Path) -> None:
    """import_certificates and nothing else: no publish by hand, no restart of the agent."""
    with running_fleet(nginx_factory, tmp_path) as fleet:
        directory = tmp_path / "gateway-certs"
        directory.mkdir()
        name = f"{unique('imported')}.example.test"
        cert_pem, key_pem, _ = self_signed_pem([name, f"www.{name}"])
        (directory / f"{name}.crt").write_text(cert_pem)
        (directory / f"{name}.key").write_text(key_pem)

        call_command("import_certificates", str(directory))

        version = Certificate.objects.get(common_name=name).current_version
        served = fleet.wait_served(name, version.serial_hex)
        assert served.fingerprint(hashes.SHA256()).hex() == version.fingerprint_sha256
        fleet.wait_served(f"www.{name}", version.serial_hex)
