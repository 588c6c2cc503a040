"""Thin Celery tasks on the ``integrations`` queue: take ids, call integrations.delivery / integrations.feeds.

Late acks (the project default) make a crash redeliver; the services make a redelivery harmless (a claimed
notification is never sent twice, a feed fetch is a conditional GET)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(name="integrations.deliver_notification", bind=True, acks_late=True, autoretry_for=TRANSIENT,
             max_retries=10, retry_backoff=5, retry_jitter=True, time_limit=120, soft_time_limit=100)
def deliver_notification(self: Any, notification_id: int) -> dict[str, Any]:
    """Deliver one notification. The row carries the attempt count and backoff, so a redelivered or duplicated
    message (a Redis ETA past its visibility timeout) finds it claimed or not yet due and sends nothing."""
    from integrations.delivery import deliver

    outcome = deliver(notification_id)
    if outcome.status == "retry" and outcome.retry_in is not None:
        # the row is pending with next_attempt_at: if this retry is lost, the sweep sends it when due
        raise self.retry(countdown=outcome.retry_in, max_retries=settings.NOTIFY_MAX_ATTEMPTS)
    return {"outcome": outcome.status, "detail": outcome.detail[:300]}


@shared_task(name="integrations.deliver_due_notifications", acks_late=True, autoretry_for=TRANSIENT,
             max_retries=3, retry_backoff=5, time_limit=120, soft_time_limit=100)
def deliver_due_notifications() -> dict[str, Any]:
    """The sweep: enqueue pending rows whose task was lost; fail rows abandoned mid-send."""
    from integrations.delivery import due_notifications, fail_abandoned_sends

    abandoned = fail_abandoned_sends()
    due = due_notifications()
    for pk in due:
        deliver_notification.delay(pk)
    return {"enqueued": len(due), "abandoned": abandoned}


@shared_task(name="integrations.fetch_threat_feeds", acks_late=True, autoretry_for=TRANSIENT, max_retries=3,
             retry_backoff=10, time_limit=600, soft_time_limit=560)
def fetch_threat_feeds() -> dict[str, Any]:
    """Fetch every enabled feed (conditional GET), then propose the merged list to the WAF if it changed."""
    from integrations.feeds import fetch_all_and_publish

    return fetch_all_and_publish()
