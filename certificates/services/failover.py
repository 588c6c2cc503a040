"""Temporary self-signed certificates when renewal fails close to expiry (or a new certificate has none)."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from certificates import x509
from certificates.models import Certificate, CertificateVersion, VersionSource
from certificates.services import seams
from certificates.services.versions import make_current, store_version

logger = logging.getLogger(__name__)

TEMPORARY_REFRESH_BEFORE = dt.timedelta(days=2)  # renew the temporary one itself when renewal fails that long


def needs_failover(certificate: Certificate, now: dt.datetime | None = None) -> bool:
    """No certificate yet, or the served one is real and expires within CERT_FAILOVER_DAYS, or it is a
    temporary one about to expire itself."""
    now = now or timezone.now()
    current = certificate.current_version
    if current is None:
        return True
    if current.is_temporary:
        return current.not_after - now <= TEMPORARY_REFRESH_BEFORE
    return current.not_after - now <= dt.timedelta(days=settings.CERT_FAILOVER_DAYS)


def fail_over(certificate: Certificate, reason: str) -> CertificateVersion | None:
    """Serve a temporary certificate with the same subject and SANs (marked temporary) and alert. Renewal
    keeps going; the real certificate retires this one when it lands. None if not needed."""
    certificate.refresh_from_db()
    if not needs_failover(certificate):
        return None
    cert_pem, key_pem = x509.make_temporary_certificate(
        list(certificate.domains), certificate.key_type, settings.CERT_TEMPORARY_VALIDITY_DAYS)
    info = x509.certificate_info(cert_pem)
    version, _ = store_version(certificate, source=VersionSource.TEMPORARY, leaf_pem=cert_pem, chain_pem="",
                               key_pem=key_pem, info=info)
    previous = certificate.current_version
    with transaction.atomic():  # the switch and its alert together
        make_current(certificate, version, action="certificate.failover")
        if previous is not None and previous.is_temporary:
            CertificateVersion.objects.filter(pk=previous.pk, retired_at__isnull=True).update(
                retired_at=timezone.now())
        seams.notify("certificate.failover", seams.Severity.HIGH,
                     f"Certificate {certificate.name} is on a temporary certificate",
                     dedup_key=f"certificate.failover:{certificate.pk}:{version.pk}",
                     context={"certificate": certificate.name, "domains": list(certificate.domains),
                              "reason": reason, "temporary_not_after": version.not_after.isoformat(),
                              "real_not_after": previous.not_after.isoformat()
                              if previous and not previous.is_temporary else None})
    logger.warning("certificate %s failed over to a temporary certificate: %s", certificate.name, reason)
    return version
