"""RFC 9773 §4.3: poll each certificate's renewal window again (the CA may move it earlier, e.g. before a mass
revocation), honouring ``Retry-After``, and bring ``renew_after`` forward into a moved window.

The network calls run outside any transaction; each certificate's update is one short conditional UPDATE
(keyed on the version polled, so a renewal that happened meanwhile is never overwritten)."""

from __future__ import annotations

import datetime as dt
import logging
import random

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from certificates.acme_client import AcmeClient, AcmeError
from certificates.models import AcmeAccount, Certificate, CertificateVersion
from certificates.services import seams
from certificates.services.policy import ari_check_due, ari_next_check, ari_renew_after
from certificates.x509 import renewal_due_at

logger = logging.getLogger(__name__)

WINDOW_MOVED = "certificate.renewal_window.moved"


def refresh_renewal_info(now: dt.datetime | None = None, batch: int | None = None,
                         rng: random.Random | None = None) -> dict[str, int]:
    """Poll the due certificates' windows (at most ``batch``, oldest check first); returns counts."""
    now = now or timezone.now()
    batch = batch or settings.CERT_ARI_BATCH
    rows = list(ari_check_due(now)[:batch])
    clients: dict[int, AcmeClient | AcmeError] = {}
    counts = {"checked": 0, "moved": 0, "failed": 0, "no_ari": 0}
    for cert in rows:
        version = cert.current_version
        assert version is not None and version.account is not None  # the query guarantees both
        client = _client(clients, version.account)
        if isinstance(client, AcmeError):
            _back_off(cert, version, now, client)
            counts["failed"] += 1
            continue
        if not client.has_ari:
            counts["no_ari"] += _forget_account(version.account)
            continue
        try:
            info = client.renewal_info(version.ari_cert_id)
        except AcmeError as exc:
            _back_off(cert, version, now, exc)
            counts["failed"] += 1
            continue
        assert info is not None  # has_ari and an ARI id
        counts["checked"] += 1
        counts["moved"] += _apply(cert, version, info.window, ari_next_check(now, info.retry_after), rng)
    return counts


def _client(clients: dict[int, AcmeClient | AcmeError], account: AcmeAccount) -> AcmeClient | AcmeError:
    """One client per account per run (one directory fetch), or the error that prevented it."""
    if account.pk not in clients:
        try:
            clients[account.pk] = AcmeClient.connect(account, timeout=15)
        except AcmeError as exc:
            logger.warning("renewal information: cannot reach %s: %s", account.name, exc)
            clients[account.pk] = exc
    return clients[account.pk]


def _back_off(cert: Certificate, version: CertificateVersion, now: dt.datetime, exc: AcmeError) -> None:
    """ARI is advice: a failed poll changes nothing but the next check (the CA's Retry-After, bounded)."""
    logger.warning("certificate %s: renewal information not refreshed: %s", cert.name, exc)
    Certificate.objects.filter(pk=cert.pk, current_version_id=version.pk).update(
        ari_next_check_at=ari_next_check(now, exc.retry_after))


def _forget_account(account: AcmeAccount) -> int:
    """The directory no longer offers renewalInfo (AcmeClient.connect recorded that on the account): stop polling its
    certificates until a renewal at a CA that offers it sets a next check again."""
    return Certificate.objects.filter(current_version__account=account, ari_next_check_at__isnull=False).update(
        ari_next_check_at=None)


def _apply(cert: Certificate, version: CertificateVersion, window: tuple[dt.datetime, dt.datetime],
           next_check: dt.datetime, rng: random.Random | None) -> int:
    policy_due = renewal_due_at(version.not_before, version.not_after, days_before=settings.CERT_RENEW_DAYS_BEFORE)
    target = ari_renew_after(window, cert.renew_after, policy_due, rng)
    same_version = Certificate.objects.filter(pk=cert.pk, current_version_id=version.pk)
    if target is None:
        same_version.update(ari_next_check_at=next_check)
        return 0
    with transaction.atomic():
        # conditional on the row as it is now: never later than a renew_after set meanwhile
        moved = same_version.filter(Q(renew_after__isnull=True) | Q(renew_after__gt=target)).update(
            renew_after=target, ari_next_check_at=next_check)
        if not moved:
            same_version.update(ari_next_check_at=next_check)
            return 0
        seams.record(WINDOW_MOVED, cert,
                     summary=f"{cert.name}: the CA moved the renewal window earlier; renewing from "
                             f"{target:%Y-%m-%d %H:%M} UTC",
                     before={"renew_after": cert.renew_after.isoformat() if cert.renew_after else None},
                     after={"renew_after": target.isoformat(), "window_start": window[0].isoformat(),
                            "window_end": window[1].isoformat(), "version_id": version.pk})
    logger.info("certificate %s: renewal window moved earlier, renew_after %s", cert.name, target)
    return 1
