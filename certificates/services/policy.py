"""When to renew, when to try again, and which certificates are due — pure functions and indexed queries."""

from __future__ import annotations

import datetime as dt
import random

from django.conf import settings
from django.db.models import Q, QuerySet

from certificates.models import Certificate, CertificateVersion, VersionSource
from certificates.x509 import renewal_due_at

BACKOFF_BASE_SECONDS = 300  # first retry after ~5 minutes
BACKOFF_CAP_SECONDS = 6 * 3600  # never wait longer than 6 hours between attempts
RATE_LIMIT_MIN_SECONDS = 3600  # a rate-limited CA that names no Retry-After: wait at least an hour
# RFC 9773 §4.3: poll renewalInfo again when the CA's Retry-After says, within sane bounds (a CA asking for
# seconds would make a storm, one asking for weeks would miss an early window before a mass revocation)
ARI_CHECK_MIN = dt.timedelta(hours=1)
ARI_CHECK_MAX = dt.timedelta(hours=24)
ARI_CHECK_DEFAULT = dt.timedelta(hours=6)


def renew_after_for(not_before: dt.datetime, not_after: dt.datetime,
                    ari_window: tuple[dt.datetime, dt.datetime] | None = None) -> dt.datetime:
    """30 days before expiry or when a third of the lifetime is left, whichever comes first (so a 6-day
    certificate renews after 4 days); the CA's ARI window start when it offers one (RFC 9773)."""
    if ari_window is not None:
        return ari_window[0]
    return renewal_due_at(not_before, not_after, days_before=settings.CERT_RENEW_DAYS_BEFORE)


def ari_next_check(now: dt.datetime, retry_after: dt.datetime | None = None) -> dt.datetime:
    """When to poll the renewal window again: the CA's ``Retry-After`` clamped to 1-24 h, else 6 h."""
    if retry_after is None:
        return now + ARI_CHECK_DEFAULT
    return now + min(ARI_CHECK_MAX, max(ARI_CHECK_MIN, retry_after - now))


def ari_polled(version: CertificateVersion, now: dt.datetime) -> dt.datetime | None:
    """A newly current version's first renewal window poll (issuance just fetched it): a real certificate
    with an ARI id from an account whose directory offers renewalInfo (or was not seen yet); None otherwise,
    so ``cert_ari_check_idx`` only ever holds certificates worth polling."""
    if version.source == VersionSource.TEMPORARY or not version.ari_cert_id or version.account is None:
        return None
    return None if version.account.ari_offered is False else ari_next_check(now)


def ari_renew_after(window: tuple[dt.datetime, dt.datetime], current: dt.datetime | None, policy_due: dt.datetime,
                    rng: random.Random | None = None) -> dt.datetime | None:
    """The earlier renew_after a polled window asks for, or None to keep ``current``. Only a window that ends
    before ``current`` moves it (a moment already inside the window stays, so polling does not creep towards
    the start); the new moment is uniform in the window (RFC 9773 §4.2) and never later than the policy."""
    start, end = window
    if end < start or (current is not None and current <= end):
        return None
    rng = rng or random.Random()  # noqa: S311 (spreading renewals, not security)
    moment = start + (end - start) * rng.random()
    return min(moment, policy_due)


def backoff_until(failures: int, now: dt.datetime, retry_after: dt.datetime | None = None,
                  rate_limited: bool = False, rng: random.Random | None = None) -> dt.datetime:
    """Exponential backoff with full jitter in its upper half (spread, never zero), at least the CA's
    ``Retry-After``; a rate limit without one waits at least ``RATE_LIMIT_MIN_SECONDS``."""
    rng = rng or random.Random()  # noqa: S311 (jitter, not security)
    exp = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    delay = exp * rng.uniform(0.5, 1.0)
    if rate_limited and retry_after is None:
        delay = max(delay, RATE_LIMIT_MIN_SECONDS)
    when = now + dt.timedelta(seconds=delay)
    if retry_after is not None and retry_after > when:
        when = retry_after
    return when


def due_certificates(now: dt.datetime) -> QuerySet[Certificate]:
    """Certificates due for renewal and not backing off. Served by the partial index ``cert_due_idx``
    (auto_renew AND renew_after <= now): a range scan over due rows only."""
    return Certificate.objects.filter(auto_renew=True, renew_after__lte=now).filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    ).order_by()  # no sort: the caller only needs the set


def retry_ready_certificates(now: dt.datetime) -> QuerySet[Certificate]:
    """Failed certificates whose backoff has passed (index ``cert_retry_idx``), for the frequent retry job."""
    return Certificate.objects.filter(auto_renew=True, consecutive_failures__gt=0,
                                      next_attempt_at__lte=now).order_by()


def ari_check_due(now: dt.datetime) -> QuerySet[Certificate]:
    """Certificates whose renewal window poll is due: a range scan over ``cert_ari_check_idx`` (auto_renew AND
    ari_next_check_at <= now), joined to the current version (real, with an ARI id) and its account (whose
    directory offered renewalInfo, or was not seen yet). Oldest check first, so a bounded batch is fair."""
    return (Certificate.objects.filter(auto_renew=True, ari_next_check_at__lte=now,
                                       current_version__account__isnull=False, current_version__ari_cert_id__gt="")
            .exclude(current_version__source="temporary")
            .filter(Q(current_version__account__ari_offered=True)
                    | Q(current_version__account__ari_offered__isnull=True))
            .select_related("current_version__account")
            .order_by("ari_next_check_at"))


def failover_candidates(now: dt.datetime) -> QuerySet[Certificate]:
    """Failing certificates that expire within CERT_FAILOVER_DAYS and are not on a temporary one already
    (range over ``cert_not_after_idx``)."""
    horizon = now + dt.timedelta(days=settings.CERT_FAILOVER_DAYS)
    return (Certificate.objects.filter(not_after__lte=horizon, consecutive_failures__gt=0)
            .exclude(current_version__source="temporary").order_by())
