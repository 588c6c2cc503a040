"""Revoke a certificate version through ACME, on demand."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from certificates.acme_client import AcmeClient, AcmeError, LocalError
from certificates.models import CertificateVersion
from certificates.services import seams

# RFC 5280 CRLReason codes ACME accepts
REASONS = {"unspecified": 0, "keyCompromise": 1, "superseded": 4, "cessationOfOperation": 5}


def revoke_version(version: CertificateVersion, reason: str = "unspecified", *, actor: object = "certificates") -> None:
    """Revoke at the issuing CA and mark the version; a temporary or imported version cannot be revoked."""
    if reason not in REASONS:
        raise ValueError(f"unknown revocation reason {reason!r}; use one of {', '.join(REASONS)}")
    if version.revoked_at is not None:
        return
    if version.account is None:
        raise AcmeError(f"version {version.serial_hex} was not issued through ACME here: nothing to revoke",
                        error_type=LocalError.NOT_ACME, permanent=True)
    AcmeClient.connect(version.account).revoke(version.cert_pem, REASONS[reason])
    with transaction.atomic():
        CertificateVersion.objects.filter(pk=version.pk).update(revoked_at=timezone.now(), revocation_reason=reason)
        seams.record("certificate.revoked", version.certificate, actor=actor,
                     summary=f"{version.certificate.name}: revoked {version.serial_hex} ({reason})",
                     after={"version_id": version.pk, "serial": version.serial_hex, "reason": reason})


def request_revocation(version: CertificateVersion, *, actor: object) -> None:
    """Record that someone asked for ``version`` to be revoked (the caller enqueues ``revoke_version``)."""
    cert = version.certificate
    seams.record("certificate.revoke.requested", cert, actor=actor, summary=f"{cert.name}: revoke {version.serial_hex}",
                 after={"version_id": version.pk})
