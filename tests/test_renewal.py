"""Renewal policy, backoff, the per-certificate Redis lock, and clear errors for bad input — on real
PostgreSQL, Redis and (for the CA cases) Pebble."""

from __future__ import annotations

import datetime as dt
import random
import time

import pytest
from django.utils import timezone

from certificates.acme_client import RATE_LIMITED, AcmeError, LocalError
from certificates.models import AcmeOrder, CertificateState, CertificateVersion, OrderStatus
from certificates.services import policy
from certificates.services.renewal import (
    RenewalOutcome,
    _record_failure,
    clear_backoff,
    lock_key,
    renew_certificate,
)
from gateways.models import GatewayGroup
from tests.certificates_support import (
    challenge_files,
    install_expiring_version,
    make_account,
    make_certificate,
    pushes,
    served_serials,
    unique,
)
from worker_project.locks import RedisLock

UTC = dt.UTC
T0 = dt.datetime(2030, 1, 1, tzinfo=UTC)


# ---- policy -----------------------------------------------------------------------------------------------

def test_renew_after_90_day_certificate_is_30_days_before_expiry() -> None:
    assert policy.renew_after_for(T0, T0 + dt.timedelta(days=90)) == T0 + dt.timedelta(days=60)


def test_renew_after_6_day_certificate_is_when_a_third_is_left() -> None:
    assert policy.renew_after_for(T0, T0 + dt.timedelta(days=6)) == T0 + dt.timedelta(days=4)


def test_ari_window_start_wins_when_offered() -> None:
    window = (T0 + dt.timedelta(days=10), T0 + dt.timedelta(days=11))
    assert policy.renew_after_for(T0, T0 + dt.timedelta(days=90), window) == window[0]


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [(policy.backoff_until(n, T0, rng=rng) - T0).total_seconds() for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        exp = min(policy.BACKOFF_CAP_SECONDS, policy.BACKOFF_BASE_SECONDS * 2 ** (n - 1))
        assert exp / 2 <= delay <= exp
    assert max(delays) <= policy.BACKOFF_CAP_SECONDS
    spread = {round((policy.backoff_until(3, T0) - T0).total_seconds()) for _ in range(20)}
    assert len(spread) > 10, "jitter spreads a herd of failures"


def test_backoff_honours_retry_after_and_rate_limits() -> None:
    later = T0 + dt.timedelta(hours=3)
    assert policy.backoff_until(1, T0, retry_after=later) == later
    assert policy.backoff_until(1, T0, rate_limited=True) >= T0 + dt.timedelta(seconds=policy.RATE_LIMIT_MIN_SECONDS)


# ---- lock -------------------------------------------------------------------------------------------------

def test_redis_lock_only_the_owner_refreshes_or_releases() -> None:
    key = unique("lock-test")
    a, b = RedisLock(key, ttl_seconds=0.5), RedisLock(key, ttl_seconds=5)
    assert a.acquire() and not b.acquire()
    assert not b.release(), "a non-owner cannot delete the lock"
    assert a.holder() == a.token
    time.sleep(0.7)  # a's lock expires (a crashed holder)
    assert b.acquire(), "an expired lock is taken over"
    assert not a.refresh() and a.lost, "the old holder learns it lost the lock"
    assert not a.release() and b.holder() == b.token, "and cannot release its successor's lock"
    assert b.release() and b.holder() is None


def test_redis_lock_refresher_keeps_a_long_holder() -> None:
    lock = RedisLock(unique("lock-refresh"), ttl_seconds=0.3)
    assert lock.acquire()
    lock.start_refresher()
    time.sleep(1.0)
    assert lock.holder() == lock.token
    assert lock.release()


# ---- attempts on real components --------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_locked_certificate_is_left_to_its_holder(pebble) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('locked')}.example.test"], make_account(pebble))
    other = RedisLock(lock_key(cert.pk), ttl_seconds=30)
    assert other.acquire()
    try:
        assert renew_certificate(cert.pk).outcome == "locked"
        assert not AcmeOrder.objects.filter(certificate=cert).exists(), "no second order while locked"
    finally:
        other.release()


@pytest.mark.django_db(transaction=True)
def test_unreachable_directory_is_a_clear_failure_with_backoff_and_a_pushed_temporary(pebble) -> None:  # type: ignore[no-untyped-def]
    """A CA that cannot be reached is not bad input: by design a certificate with nothing to serve gets a marked
    temporary certificate pushed at once (failover.needs_failover), and exactly one, however often it fails."""
    GatewayGroup.objects.get_or_create(name="default")
    account = make_account(pebble, directory_url="https://127.0.0.1:9/dir")
    cert = make_certificate([f"{unique('down')}.example.test"], account, auto_renew=True)
    pushed_before = pushes()
    before = timezone.now()
    result = renew_certificate(cert.pk)
    assert result.outcome == RenewalOutcome.FAILED
    cert.refresh_from_db()
    order = AcmeOrder.objects.get(certificate=cert)
    assert order.status == OrderStatus.FAILED and order.error_type == LocalError.CONNECTION
    assert "cannot reach the ACME server at https://127.0.0.1:9/dir" in order.error
    assert "cannot reach the ACME server" in cert.last_error and cert.consecutive_failures == 1
    assert cert.next_attempt_at > before + dt.timedelta(seconds=policy.BACKOFF_BASE_SECONDS / 2 - 1)
    temporary = cert.current_version
    assert temporary is not None and temporary.is_temporary and cert.state == CertificateState.TEMPORARY
    assert pushes() == pushed_before + 1 and served_serials("default") == {cert.name: temporary.serial_hex}

    assert renew_certificate(cert.pk).outcome == RenewalOutcome.BACKING_OFF, "no retry storm"
    assert AcmeOrder.objects.filter(certificate=cert).count() == 1
    clear_backoff(cert, actor="test")
    assert renew_certificate(cert.pk).outcome == RenewalOutcome.FAILED  # "renew now" really tries again
    cert.refresh_from_db()
    assert cert.consecutive_failures == 2
    assert cert.current_version == temporary and pushes() == pushed_before + 1, "no second temporary pushed"


@pytest.mark.django_db(transaction=True)
def test_retry_after_from_the_ca_sets_the_next_attempt(pebble) -> None:  # type: ignore[no-untyped-def]
    cert = make_certificate([f"{unique('rl')}.example.test"], make_account(pebble))
    retry_at = timezone.now() + dt.timedelta(hours=5)
    _record_failure(cert, AcmeError("too many certificates", error_type=RATE_LIMITED, retry_after=retry_at), "rl")
    cert.refresh_from_db()
    assert cert.next_attempt_at == retry_at
    assert renew_certificate(cert.pk).outcome == "backing_off"


def _no_push_and_no_version(cert) -> None:  # type: ignore[no-untyped-def]
    assert not CertificateVersion.objects.filter(certificate=cert).exists()
    cert.refresh_from_db()
    assert cert.current_version is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("domains", "challenge", "expected"), [
    (["bad_name!.example.test"], "http-01", "invalid domain name 'bad_name!.example.test'"),
    (["*.wild.example.test"], "http-01", "wildcards can only be validated with dns-01"),
])
def test_bad_input_is_refused_before_the_ca(pebble, domains, challenge, expected) -> None:  # type: ignore[no-untyped-def]
    GatewayGroup.objects.get_or_create(name="default")  # so a push would show as a new ResourceVersion
    cert = make_certificate(domains, make_account(pebble), challenge_type=challenge)
    pushed_before = pushes()
    assert renew_certificate(cert.pk).outcome == "failed"
    order = AcmeOrder.objects.get(certificate=cert)
    assert order.status == OrderStatus.FAILED and expected in order.error and order.account is None
    assert not order.order_url, "nothing was sent to the CA"
    cert.refresh_from_db()
    assert expected in cert.last_error and cert.state == CertificateState.FAILED
    _no_push_and_no_version(cert)
    assert pushes() == pushed_before


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_ca_error_is_recorded_on_the_attempt(pebble, nginx_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A name outside the test zone: Pebble's own DNS lookup fails, the CA says so, nothing is pushed."""
    GatewayGroup.objects.get_or_create(name="default")
    ngx = nginx_factory(http_port=pebble.http_port)
    cert = make_certificate([f"{unique('nx')}.not-served.test"], make_account(pebble))
    served = install_expiring_version(cert, days_left=60)  # far from expiry: no failover either
    pushed_before = pushes()
    with challenge_files(ngx.challenge_dir, monkeypatch):
        assert renew_certificate(cert.pk, force=True).outcome == "failed"
    order = AcmeOrder.objects.get(certificate=cert, account__isnull=False)
    assert order.status == OrderStatus.FAILED and order.order_url
    assert order.error_type.startswith("urn:ietf:params:acme:error:"), order.error_type
    cert.refresh_from_db()
    assert "not-served.test" in cert.last_error and order.error in cert.last_error
    assert cert.current_version == served and CertificateVersion.objects.filter(certificate=cert).count() == 1
    assert pushes() == pushed_before
