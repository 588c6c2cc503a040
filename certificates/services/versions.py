"""Immutable certificate versions: validate and store, make current (and publish), roll back, retire."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from certificates import x509
from certificates.models import (
    AcmeAccount,
    AcmeOrder,
    Certificate,
    CertificateState,
    CertificateVersion,
    VersionSource,
)
from certificates.services import seams
from certificates.services.policy import ari_polled, renew_after_for

logger = logging.getLogger(__name__)


class RollbackError(ValueError):
    """The version asked for cannot be served (another certificate's, expired, revoked, temporary)."""


def trust_roots_for(account: AcmeAccount | None) -> str:
    """The PEM roots an issued chain must build to: the account's, else ``settings.CERT_TRUST_STORE``."""
    if account is not None and account.trust_roots_pem.strip():
        return account.trust_roots_pem
    path = settings.CERT_TRUST_STORE
    if path:
        return Path(path).read_text()
    raise x509.CertificateValidationError(
        "no_trust_store", "no trust store configured: set CERT_TRUST_STORE or the account's trust roots")


def validate_fullchain(certificate: Certificate, fullchain_pem: str, key_pem: str,
                       account: AcmeAccount | None, domains: list[str] | None = None
                       ) -> tuple[str, str, x509.CertificateInfo]:
    """(leaf, chain, info) of an issued fullchain, or ``CertificateValidationError`` — before anything is
    stored or pushed."""
    leaf, chain = x509.split_fullchain(fullchain_pem)
    info = x509.validate_issued_certificate(leaf, chain, key_pem, domains or certificate.domains,
                                            trust_roots_for(account))
    return leaf, chain, info


def store_version(certificate: Certificate, *, source: str, leaf_pem: str, chain_pem: str, key_pem: str,
                  info: x509.CertificateInfo, account: AcmeAccount | None = None,
                  order: AcmeOrder | None = None) -> tuple[CertificateVersion, bool]:
    """Store a version (or find the one with the same fingerprint: a redelivered download is not a second
    version). Returns (version, created)."""
    existing = CertificateVersion.objects.filter(certificate=certificate,
                                                 fingerprint_sha256=info.fingerprint_sha256).first()
    if existing is not None:
        return existing, False
    ari_id = ""
    if source != VersionSource.TEMPORARY:  # a CA's certificate (issued here, imported, restored) has an ARI id
        try:
            ari_id = x509.ari_cert_id(leaf_pem)
        except (ValueError, x509.CertificateError):
            ari_id = ""
    try:
        with transaction.atomic():
            version = CertificateVersion.objects.create(
                certificate=certificate, source=source, serial_hex=info.serial_hex,
                fingerprint_sha256=info.fingerprint_sha256, subject=info.subject[:500],
                issuer_dn=info.issuer_dn[:500], domains=info.domains, not_before=info.not_before,
                not_after=info.not_after, cert_pem=leaf_pem, chain_pem=chain_pem, key_pem=key_pem,
                key_type=x509.key_type_of(key_pem), account=account, order=order, ari_cert_id=ari_id,
            )
    except IntegrityError:  # the unique fingerprint constraint: someone stored it in between
        return CertificateVersion.objects.get(certificate=certificate,
                                              fingerprint_sha256=info.fingerprint_sha256), False
    return version, True


# A new current version rebuilds the group's whole certificate set (every certificate, keys decrypted), which the
# Gateways then write and reload nginx for. During a burst of renewals the rebuilds start at most this often (the
# versions made current meanwhile go out together): 200 renewals measured 68 rebuilds of a 436 kB set without it.
CERTIFICATE_SET_PUBLISH_INTERVAL = 0.5


def make_current(certificate: Certificate, version: CertificateVersion, *, actor: Any = "certificates",
                 action: str = "certificate.version.activated",
                 ari_window: tuple[dt.datetime, dt.datetime] | None = None) -> None:
    """The one way a version becomes current (issued, failed over, rolled back, imported, restored): point the
    certificate at it, apply the renewal policy, audit, and publish after commit. A real certificate replacing
    a temporary one retires the temporary one and sends the recovery alert."""
    now = timezone.now()
    with transaction.atomic():
        cert = Certificate.objects.select_for_update().get(pk=certificate.pk)
        previous = cert.current_version
        cert.current_version = version
        cert.not_after = version.not_after
        cert.ari_next_check_at = ari_polled(version, now)  # the refresh job polls only real ARI versions
        if version.is_temporary:
            cert.state = CertificateState.TEMPORARY
            if cert.renew_after is None or cert.renew_after > now:
                cert.renew_after = now  # a temporary certificate needs a real one as soon as possible
        else:
            cert.state = CertificateState.VALID if version.not_after > now else CertificateState.EXPIRED
            cert.renew_after = renew_after_for(version.not_before, version.not_after, ari_window)
            cert.consecutive_failures = 0
            cert.next_attempt_at = None
            cert.last_error = ""
        cert.save()
        seams.record(action, cert, actor=actor,
                     summary=f"{cert.name}: serving {version.source} version {version.serial_hex}",
                     before={"version_id": previous.pk if previous else None},
                     after={"version_id": version.pk, "serial": version.serial_hex,
                            "not_after": version.not_after.isoformat(), "source": version.source})
        if previous is not None and previous.is_temporary and not version.is_temporary:
            CertificateVersion.objects.filter(pk=previous.pk, retired_at__isnull=True).update(retired_at=now)
            seams.record("certificate.recovered", cert, actor=actor,
                         summary=f"{cert.name}: real certificate replaced the temporary one")
            seams.notify("certificate.recovered", seams.Severity.INFO, f"Certificate {cert.name} recovered",
                         dedup_key=f"certificate.recovered:{cert.pk}:{version.pk}",
                         context={"certificate": cert.name, "serial": version.serial_hex,
                                  "not_after": version.not_after.isoformat()})
        seams.publish_on_commit("certificates", cert.gateway_group, min_interval=CERTIFICATE_SET_PUBLISH_INTERVAL)
    certificate.refresh_from_db()


def rollback(certificate: Certificate, version: CertificateVersion, *, actor: Any) -> None:
    """Serve an older, still valid, non-revoked real version again (audited)."""
    if version.certificate_id != certificate.pk:
        raise RollbackError(f"version {version.pk} belongs to another certificate")
    if version.revoked_at is not None:
        raise RollbackError(f"version {version.serial_hex} was revoked")
    if version.not_after <= timezone.now():
        raise RollbackError(f"version {version.serial_hex} has expired")
    if version.pk == certificate.current_version_id:
        raise RollbackError("that version is already current")
    CertificateVersion.objects.filter(pk=version.pk).update(retired_at=None)
    make_current(certificate, version, actor=actor, action="certificate.rollback")


def retire_superseded_versions(now: dt.datetime | None = None) -> int:
    """Mark versions retired once their certificate's current version is older than the grace period
    (Gateways had that long to take the new one). One UPDATE."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=settings.CERT_RETIRE_GRACE_HOURS)
    return (CertificateVersion.objects.filter(retired_at__isnull=True,
                                              certificate__current_version__created_at__lte=cutoff)
            .exclude(pk=F("certificate__current_version")).update(retired_at=now))
