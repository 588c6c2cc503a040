"""When to renew, when to try again, and which certificates are due — pure functions and indexed queries."""

from __future__ import annotations

import datetime as dt
import random

from django.conf import settings
from django.db.models import Q, QuerySet

from certificates.models import Certificate
from certificates.x509 import renewal_due_at

BACKOFF_BASE_SECONDS = 300  # first retry after ~5 minutes
BACKOFF_CAP_SECONDS = 6 * 3600  # never wait longer than 6 hours between attempts
RATE_LIMIT_MIN_SECONDS = 3600  # a rate-limited CA that names no Retry-After: wait at least an hour


def renew_after_for(not_before: dt.datetime, not_after: dt.datetime,
                    ari_window: tuple[dt.datetime, dt.datetime] | None = None) -> dt.datetime:
    """30 days before expiry or when a third of the lifetime is left, whichever comes first (so a 6-day
    certificate renews after 4 days); the CA's ARI window start when it offers one (RFC 9773)."""
    if ari_window is not None:
        return ari_window[0]
    return renewal_due_at(not_before, not_after, days_before=settings.CERT_RENEW_DAYS_BEFORE)


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


def failover_candidates(now: dt.datetime) -> QuerySet[Certificate]:
    """Failing certificates that expire within CERT_FAILOVER_DAYS and are not on a temporary one already
    (range over ``cert_not_after_idx``)."""
    horizon = now + dt.timedelta(days=settings.CERT_FAILOVER_DAYS)
    return (Certificate.objects.filter(not_after__lte=horizon, consecutive_failures__gt=0)
            .exclude(current_version__source="temporary").order_by())
