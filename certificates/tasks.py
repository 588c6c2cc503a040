"""Thin Celery tasks: take ids, call certificates.services. All idempotent (acks late; redelivery is safe)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from certificates.services import ari, renewal, scan, versions
from certificates.services.renewal import RenewalOutcome

logger = logging.getLogger(__name__)

# A database or Redis hiccup (a restart, too many connections) is retried with backoff: the renewal is
# idempotent and resumes its stored order. ACME and validation errors are handled inside the service.
TRANSIENT = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)


@shared_task(name="certificates.renew_certificate", bind=True, acks_late=True, max_retries=5,
             autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=300, retry_jitter=True,
             time_limit=900, soft_time_limit=840)
def renew_certificate(self: Any, certificate_id: int, force: bool = False) -> dict[str, Any]:
    result = renewal.renew_certificate(certificate_id, force=force, task_id=self.request.id or "")
    if result.outcome == RenewalOutcome.LOCKED and force:
        # an admin's "renew now" while another worker holds the lock: try again once that one is done
        raise self.retry(countdown=settings.CERT_RENEW_LOCK_SECONDS / 2)
    return {"outcome": result.outcome, "version_id": result.version_id, "error": result.error[:500]}


@shared_task(name="certificates.failover_certificate", acks_late=True)
def failover_certificate(certificate_id: int) -> dict[str, Any]:
    from certificates.models import Certificate
    from certificates.services.failover import fail_over

    try:
        cert = Certificate.objects.get(pk=certificate_id)
    except Certificate.DoesNotExist:
        return {"outcome": "missing"}
    version = fail_over(cert, cert.last_error or "renewal failing close to expiry")
    return {"outcome": "failover" if version else "not_needed"}


def _enqueue_renewal(pk: int) -> object:
    return renew_certificate.delay(pk)


def _enqueue_failover(pk: int) -> object:
    return failover_certificate.delay(pk)


@shared_task(name="certificates.scan_expiring_certificates", acks_late=True)
def scan_expiring_certificates() -> dict[str, int]:
    return scan.scan_expiring_certificates(_enqueue_renewal, _enqueue_failover)


@shared_task(name="certificates.retry_failed_renewals", acks_late=True)
def retry_failed_renewals() -> dict[str, int]:
    return scan.retry_failed_renewals(_enqueue_renewal)


@shared_task(name="certificates.refresh_renewal_info", acks_late=True, time_limit=3000, soft_time_limit=2900)
def refresh_renewal_info() -> dict[str, int]:
    # a redelivery polls again only the certificates still due: harmless
    return ari.refresh_renewal_info()


@shared_task(name="certificates.retire_superseded_versions", acks_late=True)
def retire_superseded_versions() -> dict[str, int]:
    return {"retired": versions.retire_superseded_versions()}


@shared_task(name="certificates.revoke_version", acks_late=True)
def revoke_version(version_id: int, reason: str = "unspecified", actor: str = "admin") -> dict[str, Any]:
    from certificates.acme_client import AcmeError
    from certificates.models import CertificateVersion
    from certificates.services.revocation import revoke_version as revoke

    try:
        version = CertificateVersion.objects.select_related("account", "certificate").get(pk=version_id)
    except CertificateVersion.DoesNotExist:
        return {"outcome": "missing"}
    try:
        revoke(version, reason, actor=actor)
    except AcmeError as exc:
        logger.warning("revocation of version %s failed: %s", version_id, exc)
        return {"outcome": "failed", "error": str(exc)}
    return {"outcome": "revoked"}


@shared_task(name="certificates.issue_certificate_request", acks_late=True, max_retries=5, autoretry_for=TRANSIENT,
             retry_backoff=5, retry_jitter=True, time_limit=900, soft_time_limit=840)
def issue_certificate_request(request_id: int) -> dict[str, Any]:
    from certificates.services.requests import issue_request

    request = issue_request(request_id)
    return {"state": request.state if request else "missing"}
