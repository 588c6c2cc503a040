"""Delivering notifications: claim, throttle, send, record. Plain functions the tasks call.

- **Claim** with a conditional update (``pending`` and due -> ``sending``): a redelivered task, a second worker
  or the sweep finds 0 rows and sends nothing, so a notification is sent at most once.
- **Throttle** per channel and incident: the first trigger of an incident claims a window
  (``AlertThrottle.window_until``, conditional update again); triggers inside it are ``suppressed`` and
  counted. Resolve and acknowledge always go through and close the window, so the next failure pages again.
- **Retry**: a transient failure puts the row back to ``pending`` with ``next_attempt_at`` (exponential backoff
  with jitter) and the task retries; a permanent one (or the last attempt) marks it ``failed``.
- A worker lost in the middle of a send leaves ``sending``: the sweep marks it ``failed`` after the lease
  ("outcome unknown"), never sends it again — a duplicate page is worse than a visible failure in admin.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations import senders
from integrations.models import AlertThrottle, Notification, NotificationChannel, NotificationStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | suppressed | retry | failed | skipped
    retry_in: float | None = None
    detail: str = ""


def backoff_seconds(attempt: int) -> float:
    """Exponential from NOTIFY_RETRY_BASE_SECONDS, capped, with full jitter in its upper half."""
    ceiling = min(settings.NOTIFY_RETRY_MAX_SECONDS, settings.NOTIFY_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def claim(notification_id: int, now: dt.datetime | None = None) -> bool:
    """``pending`` (and due) -> ``sending``; False if another run has it or it is done."""
    now = now or timezone.now()
    return bool(Notification.objects.filter(pk=notification_id, status=NotificationStatus.PENDING)
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .update(status=NotificationStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1))


def throttle_window(channel: NotificationChannel) -> dt.timedelta:
    seconds = (channel.options or {}).get("throttle_seconds", settings.NOTIFY_THROTTLE_SECONDS)
    return dt.timedelta(seconds=int(seconds))


def take_throttle(n: Notification, now: dt.datetime) -> bool:
    """True if this trigger may page: it opened (or re-opened) the incident's window on this channel."""
    key = n.incident_key or n.dedupe_key
    until = now + throttle_window(n.channel)
    if AlertThrottle.objects.filter(channel_id=n.channel_id, incident_key=key, window_until__lte=now).update(
            window_until=until, suppressed=0):
        return True
    try:
        with transaction.atomic():
            AlertThrottle.objects.create(channel_id=n.channel_id, incident_key=key, window_until=until)
        return True
    except IntegrityError:  # the window exists and is open (or someone just opened it)
        AlertThrottle.objects.filter(channel_id=n.channel_id, incident_key=key).update(suppressed=F("suppressed") + 1)
        return False


def close_throttle(n: Notification, now: dt.datetime) -> None:
    AlertThrottle.objects.filter(channel_id=n.channel_id, incident_key=n.incident_key or n.dedupe_key).update(
        window_until=now)


def _finish(n: Notification, status: str, **fields: object) -> None:
    Notification.objects.filter(pk=n.pk, status=NotificationStatus.SENDING).update(status=status, **fields)


def deliver(notification_id: int) -> Outcome:
    """Deliver one notification once. Safe to call any number of times for the same id."""
    now = timezone.now()
    if not claim(notification_id, now):
        return Outcome("skipped", detail="not pending, not due, or claimed by another run")
    n = Notification.objects.select_related("channel").get(pk=notification_id)
    if not n.channel.enabled:
        _finish(n, NotificationStatus.SUPPRESSED, error="channel disabled before delivery")
        return Outcome("suppressed", detail="channel disabled")
    if n.event_action == "trigger" and not take_throttle(n, now):
        _finish(n, NotificationStatus.SUPPRESSED,
                error=f"throttled: incident {n.incident_key} already paged this channel within its window")
        return Outcome("suppressed", detail="throttled")
    try:
        code = senders.send(n)
    except senders.TransientSendError as exc:
        if n.attempts >= settings.NOTIFY_MAX_ATTEMPTS:
            _finish(n, NotificationStatus.FAILED, error=f"gave up after {n.attempts} attempts: {exc}"[:2000])
            _release_throttle(n)
            return Outcome("failed", detail=str(exc))
        delay = backoff_seconds(n.attempts)
        _finish(n, NotificationStatus.PENDING, error=str(exc)[:2000],
                next_attempt_at=now + dt.timedelta(seconds=delay))
        _release_throttle(n)
        logger.info("notification %s to channel %s: attempt %s failed, retry in %.0fs: %s",
                    n.pk, n.channel.name, n.attempts, delay, exc)
        return Outcome("retry", retry_in=delay, detail=str(exc))
    except senders.PermanentSendError as exc:
        _finish(n, NotificationStatus.FAILED, error=str(exc)[:2000])
        _release_throttle(n)
        logger.warning("notification %s to channel %s failed for good: %s", n.pk, n.channel.name, exc)
        return Outcome("failed", detail=str(exc))
    _finish(n, NotificationStatus.SENT, sent_at=timezone.now(), response_code=code, error="")
    if n.event_action != "trigger":
        close_throttle(n, now)
    logger.info("notification %s (%s %s) sent to channel %s", n.pk, n.event_kind, n.event_action, n.channel.name)
    return Outcome("sent")


def _release_throttle(n: Notification) -> None:
    """A trigger that did not get through must not hold the window: the next event of the incident may page."""
    if n.event_action == "trigger":
        close_throttle(n, timezone.now())


def due_notifications(limit: int = 500) -> list[int]:
    """Pending rows that are due (a lost enqueue, a retry whose task was lost), oldest first."""
    now = timezone.now()
    return list(Notification.objects.filter(status=NotificationStatus.PENDING)  # notif_status_idx
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .order_by("created_at").values_list("pk", flat=True)[:limit])


def fail_abandoned_sends() -> int:
    """Rows left ``sending`` past the lease by a lost worker: marked failed, not resent (see module doc)."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.NOTIFY_SENDING_LEASE_SECONDS)
    return Notification.objects.filter(status=NotificationStatus.SENDING, claimed_at__lt=cutoff).update(
        status=NotificationStatus.FAILED,
        error="outcome unknown: the worker was lost during the send; not resent to avoid a duplicate")
