"""Renew one certificate: under its Redis lock, resume or start an order, try issuers in order, validate,
store, make current and publish — or record the failure, back off, and fail over when expiry is near."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from certificates import x509
from certificates.acme_client import BAD_INPUT, RATE_LIMITED, AcmeClient, AcmeError, LocalError
from certificates.models import (
    AcmeAccount,
    AcmeOrder,
    Certificate,
    CertificateIssuer,
    CertificateState,
    OrderStatus,
    VersionSource,
)
from certificates.services import seams
from certificates.services.failover import fail_over
from certificates.services.issuance import (
    check_request,
    create_order,
    dns_cleanup,
    drive_order,
    finish_order,
    live_order,
)
from certificates.services.policy import BACKOFF_CAP_SECONDS, backoff_until
from certificates.services.versions import make_current, store_version, validate_fullchain
from worker_project.locks import LockNotAcquired, hold_lock

logger = logging.getLogger(__name__)


class RenewalOutcome(StrEnum):
    ISSUED = "issued"
    NOT_DUE = "not_due"
    BACKING_OFF = "backing_off"
    DISABLED = "disabled"  # auto_renew is off
    LOCKED = "locked"  # another worker holds the certificate's lock
    FAILED = "failed"
    MISSING = "missing"  # the certificate was deleted


@dataclass
class RenewalResult:
    outcome: RenewalOutcome
    version_id: int | None = None
    error: str = ""


def lock_key(certificate_id: int) -> str:
    return f"certificates:renew:{certificate_id}"


def _skip_reason(cert: Certificate, now: dt.datetime) -> RenewalOutcome | None:
    if not cert.auto_renew:
        return RenewalOutcome.DISABLED
    current = cert.current_version
    if current is not None and not current.is_temporary and cert.renew_after and cert.renew_after > now:
        return RenewalOutcome.NOT_DUE
    if cert.next_attempt_at and cert.next_attempt_at > now:
        return RenewalOutcome.BACKING_OFF
    return None


def renew_certificate(certificate_id: int, *, force: bool = False, task_id: str = "") -> RenewalResult:
    """Idempotent: a certificate not due, backing off or locked by another worker is left alone (unless
    ``force``, the admin's "renew now", which skips due/backoff checks but never the lock)."""
    try:
        cert = Certificate.objects.select_related("current_version").get(pk=certificate_id)
    except Certificate.DoesNotExist:
        logger.info("renew_certificate: certificate %s is gone", certificate_id)
        return RenewalResult(RenewalOutcome.MISSING)
    if not force and (reason := _skip_reason(cert, timezone.now())):
        return RenewalResult(reason)
    try:
        with hold_lock(lock_key(certificate_id), settings.CERT_RENEW_LOCK_SECONDS):
            cert.refresh_from_db()  # another worker may have renewed it while we waited for the lock
            if not force and (reason := _skip_reason(cert, timezone.now())):
                return RenewalResult(reason)
            return _renew_locked(cert, task_id)
    except LockNotAcquired:
        return RenewalResult(RenewalOutcome.LOCKED)


def _issuers(cert: Certificate) -> list[AcmeAccount]:
    return [link.account for link in
            CertificateIssuer.objects.filter(certificate=cert).select_related("account").order_by("priority", "id")]


def _replaces_for(cert: Certificate, account: AcmeAccount) -> str:
    current = cert.current_version
    if current is None or current.is_temporary or current.account_id != account.pk:
        return ""
    return current.ari_cert_id


def _renew_locked(cert: Certificate, task_id: str) -> RenewalResult:
    now = timezone.now()
    Certificate.objects.filter(pk=cert.pk).update(
        last_attempt_at=now,
        state=CertificateState.TEMPORARY if cert.state == CertificateState.TEMPORARY else CertificateState.RENEWING)
    try:
        domains = check_request(cert)
    except AcmeError as exc:
        _failed_attempt_without_ca(cert, exc, task_id)
        return _record_failure(cert, exc, str(exc))
    order = live_order(cert)
    if order is not None and order.deadline <= now:
        logger.info("order %s passed its deadline: abandoned, starting a fresh one", order.pk)
        finish_order(order, OrderStatus.ABANDONED, "abandoned: the order passed its deadline", LocalError.DEADLINE)
        order = None
    issuers = _issuers(cert)
    if order is not None and order.account is not None:  # resume first, with the order's own issuer
        issuers = [order.account] + [a for a in issuers if a.pk != order.account_id]
    if not issuers:
        no_issuer = AcmeError("no ACME issuer configured for this certificate", error_type=LocalError.NO_ISSUER,
                              permanent=True)
        _failed_attempt_without_ca(cert, no_issuer, task_id)
        return _record_failure(cert, no_issuer, str(no_issuer))
    errors: list[str] = []
    last: AcmeError | None = None
    for account in issuers:
        if order is None:
            order = create_order(cert, account, domains, _replaces_for(cert, account), task_id)
        try:
            version_id = _issue(cert, order, account)
            return RenewalResult(RenewalOutcome.ISSUED, version_id=version_id)
        except AcmeError as exc:
            last = exc
            errors.append(f"{account.name}: {exc}")
            logger.warning("certificate %s: order %s at %s failed: %s", cert.name, order.pk, account.name, exc)
            finish_order(order, OrderStatus.FAILED, str(exc), exc.error_type, exc.retry_after)
        order = None
    assert last is not None
    return _record_failure(cert, last, " | ".join(errors))


def _issue(cert: Certificate, order: AcmeOrder, account: AcmeAccount) -> int:
    try:
        client = AcmeClient.reuse(account)  # this thread's: directory, connection and nonces kept across orders
        try:
            fullchain = drive_order(order, client, profile=cert.profile or account.profile)
        except BaseException:
            AcmeClient.forget(account)  # the next order starts from a fresh connection and directory
            raise
        try:
            leaf, chain, info = validate_fullchain(cert, fullchain, order.key_pem or "", account, order.domains)
        except x509.CertificateValidationError as exc:
            raise AcmeError(f"issued certificate rejected by validation ({exc.reason}): {exc}",
                            error_type=f"{LocalError.VALIDATION}:{exc.reason}") from exc
    finally:
        dns_cleanup(order)
    with transaction.atomic():
        version, created = store_version(cert, source=VersionSource.ACME, leaf_pem=leaf, chain_pem=chain,
                                         key_pem=order.key_pem or "", info=info, account=account, order=order)
        finish_order(order, OrderStatus.VALID)
    window = None
    try:
        window = client.renewal_window(version.ari_cert_id)
    except AcmeError as exc:  # ARI is advice: fall back to the local policy
        logger.info("certificate %s: no renewal information (%s)", cert.name, exc)
    make_current(cert, version, action="certificate.renewed" if created else "certificate.version.activated",
                 ari_window=window)
    logger.info("certificate %s: issued %s (not after %s)", cert.name, version.serial_hex, version.not_after)
    return version.pk


def _failed_attempt_without_ca(cert: Certificate, exc: AcmeError, task_id: str) -> None:
    """Bad input never reaches the CA but is still an attempt, with its error, in admin."""
    AcmeOrder.objects.create(
        certificate=cert, account=None, status=OrderStatus.FAILED, domains=list(cert.domains or []),
        challenge_type=cert.challenge_type, error=str(exc), error_type=exc.error_type, task_id=task_id[:64],
        deadline=timezone.now(), finished_at=timezone.now())


def _record_failure(cert: Certificate, exc: AcmeError, message: str) -> RenewalResult:
    now = timezone.now()
    cert.refresh_from_db()
    failures = cert.consecutive_failures + 1
    next_at = backoff_until(failures, now, exc.retry_after, rate_limited=exc.error_type == RATE_LIMITED)
    if exc.permanent:  # the same input fails the same way: wait long (an edit or "renew now" clears it)
        next_at = max(next_at, now + dt.timedelta(seconds=BACKOFF_CAP_SECONDS))
    with transaction.atomic():
        Certificate.objects.filter(pk=cert.pk).update(
            consecutive_failures=F("consecutive_failures") + 1, next_attempt_at=next_at, last_error=message[:4000],
            state=(CertificateState.TEMPORARY if cert.state == CertificateState.TEMPORARY
                   else CertificateState.FAILED))
        seams.record("certificate.renewal.failed", cert, summary=f"{cert.name}: {message[:300]}",
                     after={"error_type": exc.error_type, "next_attempt_at": next_at.isoformat(),
                            "consecutive_failures": failures})
    if exc.error_type not in BAD_INPUT:
        fail_over(cert, message)
    return RenewalResult(RenewalOutcome.FAILED, error=message)


def clear_backoff(certificate: Certificate, *, actor: object) -> None:
    """The admin's "renew now": forget the backoff (the caller enqueues the renewal)."""
    with transaction.atomic():
        Certificate.objects.filter(pk=certificate.pk).update(next_attempt_at=None)
        seams.record("certificate.renew_now", certificate, actor=actor, summary=f"{certificate.name}: renew now")
