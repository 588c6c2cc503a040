"""Temporary-certificate failover and swap-back on a real Pebble that goes unreachable and comes back."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from certificates import x509
from certificates.models import CertificateState, CertificateVersion
from certificates.services.failover import fail_over
from certificates.services.policy import failover_candidates
from certificates.services.renewal import clear_backoff, renew_certificate
from gateways.models import GatewayGroup
from integrations.models import Notification, NotificationChannel
from tests.certificates_support import (
    challenge_files,
    install_expiring_version,
    make_account,
    make_certificate,
    pushes,
    unique,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def channels():  # type: ignore[no-untyped-def]
    GatewayGroup.objects.get_or_create(name="default")
    ops = NotificationChannel.objects.create(name=unique("ops"), kind="webhook", target="https://hooks.invalid/x")
    NotificationChannel.objects.create(name=unique("off"), kind="webhook", target="https://x.invalid", enabled=False)
    NotificationChannel.objects.create(name=unique("waf"), kind="webhook", target="https://y.invalid",
                                       event_kinds=["waf.rule.nacked"])
    return ops


@pytest.mark.slow
def test_failover_while_the_ca_is_down_then_swap_back(  # type: ignore[no-untyped-def]
        pebble, bind_server, nginx_factory, monkeypatch, channels) -> None:
    domains = [f"{unique('fo')}.{bind_server.zone}", f"{unique('fo2')}.{bind_server.zone}"]
    cert = make_certificate(domains, make_account(pebble))
    old = install_expiring_version(cert, days_left=5)
    pushed = pushes()

    pebble.stop()
    try:
        assert renew_certificate(cert.pk).outcome == "failed"
    finally:
        pebble.start()

    cert.refresh_from_db()
    temp = cert.current_version
    assert temp is not None and temp.is_temporary and cert.state == CertificateState.TEMPORARY
    info = x509.certificate_info(temp.cert_pem)
    assert info.is_temporary and info.domains == domains and info.common_name == domains[0]
    assert 7 <= (temp.not_after - timezone.now()).days + 1 <= 30
    assert "cannot reach the ACME server" in cert.last_error
    assert pushes() == pushed + 1, "temporary pushed"
    alert = Notification.objects.get(event_kind="certificate.failover")
    assert alert.channel == channels and alert.status == "pending" and alert.body["certificate"] == cert.name

    # the CA is back: renewal keeps going and the real certificate replaces the temporary one
    ngx = nginx_factory(http_port=pebble.http_port)
    clear_backoff(cert, actor="test")
    with challenge_files(ngx.challenge_dir, monkeypatch):
        assert renew_certificate(cert.pk).outcome == "issued"
    cert.refresh_from_db()
    real = cert.current_version
    assert real.source == "acme" and cert.state == CertificateState.VALID and cert.consecutive_failures == 0
    temp.refresh_from_db()
    assert temp.retired_at is not None, "the temporary version is retired at once"
    old.refresh_from_db()
    assert old.retired_at is None, "the old real one waits for the grace period"
    recovered = Notification.objects.get(event_kind="certificate.recovered")
    assert recovered.channel == channels
    assert pushes() == pushed + 2


def test_new_certificate_whose_first_order_fails_gets_a_temporary_one(pebble, channels) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('new')}.example.test"], make_account(pebble, directory_url="https://127.0.0.1:9/d"))
    assert renew_certificate(cert.pk).outcome == "failed"
    cert.refresh_from_db()
    assert cert.current_version.is_temporary and cert.state == CertificateState.TEMPORARY
    # the next failure does not mint another temporary certificate
    clear_backoff(cert, actor="test")
    assert renew_certificate(cert.pk).outcome == "failed"
    assert CertificateVersion.objects.filter(certificate=cert, source="temporary").count() == 1


def test_no_failover_far_from_expiry(pebble, channels) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('far')}.example.test"], make_account(pebble, directory_url="https://127.0.0.1:9/d"))
    served = install_expiring_version(cert, days_left=20)
    assert renew_certificate(cert.pk, force=True).outcome == "failed"
    cert.refresh_from_db()
    assert cert.current_version == served and cert.state == CertificateState.FAILED
    assert not Notification.objects.filter(event_kind="certificate.failover").exists()


def test_failing_certificate_crossing_into_the_window_is_a_failover_candidate(pebble, channels) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('cand')}.example.test"], make_account(pebble))
    install_expiring_version(cert, days_left=6)
    assert not failover_candidates(timezone.now()).filter(pk=cert.pk).exists(), "not failing: renewal handles it"
    type(cert).objects.filter(pk=cert.pk).update(consecutive_failures=3,
                                                 next_attempt_at=timezone.now() + dt.timedelta(hours=5))
    assert failover_candidates(timezone.now()).filter(pk=cert.pk).exists()
    assert fail_over(cert, "still failing") is not None
    assert not failover_candidates(timezone.now()).filter(pk=cert.pk).exists(), "already on a temporary one"
